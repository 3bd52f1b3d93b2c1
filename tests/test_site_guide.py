"""The examples of docs/testing.md run, with pytest, as the page says.

docs/guide.md's examples are whole programs: tests/test_site_examples.py runs
them. docs/testing.md's worked example is one test module: its imports
(``testing-imports``), the server under test (``testing-serve-lines``), then a
test per block. Each test block is written after those two as a module of its
own, all of them into one directory with a pytest configuration saying
``trio_mode = true`` as the page asks, and run by one pytest in a subprocess
(the triostream plugin is registered by its entry point); then the outcome the
page describes is checked per module: the tests pass, and the one written to
show a failure fails with the `ScriptMismatch` report the page shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from site_examples import DOCS, example

#: The pytest run's limit; it takes a few seconds.
TIMEOUT = 300

#: The head of the worked example's module: its imports, then the server.
HEAD = ("testing-imports", "testing-serve-lines")

#: What each test block of the worked example collects (all of them pass).
WORKED_EXAMPLE = {
    "testing-script": 1,
    "testing-mismatch": 1,
    "testing-any-chunking": 20,  # @pytest.mark.chunkings(n=20)
    "testing-any-split": 1,
    "testing-reset-anywhere": 1,
    "testing-over-tcp": 1,
}

#: The report of the test that expects the wrong reply: the message the page shows.
MISMATCH_MESSAGE = (
    "ScriptMismatch: step 4 (expect_line): the bytes differ at stream offset 6 (byte 3 of this step)\n",
    "  expected: b'help\\n'\n",
    "  arrived:  b'hello\\n'\n",
    "                 ^\n",
)


def module(*names: str) -> str:
    """The code of the named blocks, in this order, as one module."""
    return "\n\n".join(example(name).code for name in names)


#: The modules of the one pytest run, by file name: each test block after the
#: head (so that a block needing another's definitions fails), the failing
#: block, all of them as one module, and the conformance kit's own module.
MODULES = {
    **{f"test_block_{name.replace('-', '_')}.py": (*HEAD, name) for name in WORKED_EXAMPLE},
    "test_mismatch.py": (*HEAD, "testing-mismatch-report"),
    "test_one_module.py": (*HEAD, "testing-mismatch-report", *WORKED_EXAMPLE),
    "test_kit.py": ("testing-conformance-kit",),
}


@dataclass
class Run:
    """What one pytest run printed, and each module's outcome: the counts
    of its tests by result (``{"passed": 20}``), from the JUnit XML report."""

    stdout: str
    stderr: str
    outcomes: dict[str, dict[str, int]]

    def of(self, file: str) -> dict[str, int]:
        return self.outcomes.get(file.removesuffix(".py"), {})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Pytest, in a fresh interpreter, over every module of `MODULES` in one
    directory with the configuration the page asks for (and warnings as
    errors, as in this project). One run for all: each costs a few seconds
    of start-up (an interpreter, pytest and its plugins), most of the time
    these tests took when each module had a run of its own."""
    directory = tmp_path_factory.mktemp("guide")
    (directory / "pytest.ini").write_text("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    for file, names in MODULES.items():
        (directory / file).write_text(module(*names))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--junitxml=report.xml", *MODULES],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    report = directory / "report.xml"
    assert report.exists(), f"pytest wrote no report:\n{done.stdout}\n{done.stderr}"
    outcomes: dict[str, dict[str, int]] = {}
    for case in ET.parse(report).iter("testcase"):
        # (classname: the module's dotted path, then the class if any)
        counts = outcomes.setdefault(case.get("classname", "").split(".")[0], {})
        results = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        result = {"failure": "failed", "error": "errors", "skipped": "skipped"}[results[0]] if results else "passed"
        counts[result] = counts.get(result, 0) + 1
    return Run(done.stdout, done.stderr, outcomes)


@pytest.mark.parametrize("name", list(WORKED_EXAMPLE))
def test_a_worked_example_test_passes(name: str, run: Run) -> None:
    file = f"test_block_{name.replace('-', '_')}.py"
    assert run.of(file) == {"passed": WORKED_EXAMPLE[name]}, run.stdout + run.stderr


def test_the_wrong_expectation_fails_with_the_report_shown(run: Run) -> None:
    assert run.of("test_mismatch.py") == {"failed": 1}, run.stdout + run.stderr
    assert "FAILED test_mismatch.py::test_line_protocol_wrong_expectation" in run.stdout
    # Inside exception groups, pytest draws each line of the message after a "| ".
    report = "".join(line.split("| ", 1)[-1] + "\n" for line in run.stdout.splitlines())
    assert "".join(MISMATCH_MESSAGE) in report, run.stdout


def test_the_page_shows_that_report() -> None:
    # The text block after the failing test shows the same message.
    block = example("testing-mismatch-report")
    text = (DOCS / block.page).read_text()
    after = text.split("\n", block.line)[-1]
    shown = after.split("```text\n", 1)[1].split("```", 1)[0]
    report = "".join(line.split("| ", 1)[-1] + "\n" for line in shown.splitlines())
    assert "".join(MISMATCH_MESSAGE) in report, shown


def test_the_worked_example_is_one_module(run: Run) -> None:
    # The blocks make up one module, as the page says: no name is defined twice.
    expected = {"passed": sum(WORKED_EXAMPLE.values()), "failed": 1}
    assert run.of("test_one_module.py") == expected, run.stdout + run.stderr


def test_the_conformance_kit_example_passes(run: Run) -> None:
    # A test module of its own, with its own imports.
    assert run.of("test_kit.py") == {"passed": 1}, run.stdout + run.stderr
