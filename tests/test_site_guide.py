"""The examples of docs/testing.md run, with pytest, as the page says.

docs/guide.md's examples are whole programs: tests/test_site_examples.py runs
them. docs/testing.md's worked example is one test module: its imports
(``testing-imports``), the server under test (``testing-serve-lines``), then a
test per block. Each test block is written after those two into a fresh
directory, with a pytest configuration saying ``trio_mode = true`` as the page
asks, and run by pytest in a subprocess (the triostream plugin is registered by
its entry point); then the outcome the page describes is checked: the tests
pass, and the one written to show a failure fails with the `ScriptMismatch`
report the page shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from site_examples import DOCS, example

#: One pytest run's limit; they take a second or a few.
TIMEOUT = 120

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


def run_pytest(directory: Path, source: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``source`` as ``test_proto.py`` in ``directory``, in a
    fresh interpreter, with the configuration the page asks for (and warnings
    as errors, as in this project)."""
    (directory / "pytest.ini").write_text("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    (directory / "test_proto.py").write_text(source)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_proto.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def outcome(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The counts of pytest's last summary line: ``{"passed": 20}``."""
    lines = done.stdout.strip().splitlines()
    assert lines, f"pytest printed nothing:\n{done.stderr}"
    return {kind: int(count) for count, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", lines[-1])}


@pytest.mark.parametrize("name", list(WORKED_EXAMPLE))
def test_a_worked_example_test_passes(name: str, tmp_path: Path) -> None:
    done = run_pytest(tmp_path, module(*HEAD, name))
    assert outcome(done) == {"passed": WORKED_EXAMPLE[name]}, done.stdout + done.stderr
    assert done.returncode == 0


def test_the_wrong_expectation_fails_with_the_report_shown(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, module(*HEAD, "testing-mismatch-report"))
    assert outcome(done) == {"failed": 1}, done.stdout + done.stderr
    assert "FAILED test_proto.py::test_line_protocol_wrong_expectation" in done.stdout
    # Inside exception groups, pytest draws each line of the message after a "| ".
    report = "".join(line.split("| ", 1)[-1] + "\n" for line in done.stdout.splitlines())
    assert "".join(MISMATCH_MESSAGE) in report, done.stdout


def test_the_page_shows_that_report() -> None:
    # The text block after the failing test shows the same message.
    block = example("testing-mismatch-report")
    text = (DOCS / block.page).read_text()
    after = text.split("\n", block.line)[-1]
    shown = after.split("```text\n", 1)[1].split("```", 1)[0]
    report = "".join(line.split("| ", 1)[-1] + "\n" for line in shown.splitlines())
    assert "".join(MISMATCH_MESSAGE) in report, shown


def test_the_worked_example_is_one_module(tmp_path: Path) -> None:
    # The blocks make up one module, as the page says: no name is defined twice.
    done = run_pytest(tmp_path, module(*HEAD, "testing-mismatch-report", *WORKED_EXAMPLE))
    assert outcome(done) == {"passed": sum(WORKED_EXAMPLE.values()), "failed": 1}, done.stdout + done.stderr


def test_the_conformance_kit_example_passes(tmp_path: Path) -> None:
    # A test module of its own, with its own imports.
    done = run_pytest(tmp_path, module("testing-conformance-kit"))
    assert outcome(done) == {"passed": 1}, done.stdout + done.stderr
    assert done.returncode == 0
