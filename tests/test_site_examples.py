"""Every code example of the documentation site runs (see `site_examples`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from site_examples import ROOT, Example, examples

STANDALONE = [e for e in examples() if e.name is None and e.not_run is None]
NAMED = [e for e in examples() if e.name is not None]
NOT_RUN = [e for e in examples() if e.not_run is not None]

#: One example's limit; they take well under a second.
TIMEOUT = 60


def test_the_site_has_examples() -> None:
    assert len(STANDALONE) + len(NAMED) >= 10


@pytest.mark.parametrize("block", STANDALONE, ids=[e.id for e in STANDALONE])
def test_a_standalone_example_runs_to_completion(block: Example, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"docs/{block.page}:{block.line} failed:\n{done.stdout}\n{done.stderr}"


def test_every_named_example_is_driven_by_a_test() -> None:
    sources = "".join(path.read_text() for path in (ROOT / "tests").glob("test_site_*.py"))
    names = [e.name for e in NAMED]
    assert len(names) == len(set(names)), "two blocks share a name"
    unclaimed = [f"docs/{e.page}:{e.line} ({e.name})" for e in NAMED if f'"{e.name}"' not in sources]
    assert not unclaimed, f"no tests/test_site_*.py runs these: {unclaimed}"


@pytest.mark.parametrize("block", NOT_RUN, ids=[e.id for e in NOT_RUN])
def test_only_other_libraries_code_is_not_run(block: Example) -> None:
    assert block.not_run, "'# not run:' needs a reason"
    assert "triostream" not in block.code, "triostream code on the site runs"


@pytest.mark.parametrize("block", examples(), ids=[e.id for e in examples()])
def test_every_example_compiles(block: Example) -> None:
    compile(block.code, f"docs/{block.page}:{block.line}", "exec")
