"""The code examples of the documentation site, for the tests that run them.

Every fenced ``python`` block in ``docs/**/*.md`` is an example, in one of
three kinds, told by its first line:

* no marker: a whole program that runs to completion on its own (servers bind
  127.0.0.1, port 0, and stop themselves); `tests/test_site_examples.py` runs
  each one in a fresh interpreter and wants exit status 0;
* ``# example: NAME``: code that defines something to be exercised (a
  ``handle`` that would serve forever, a codec); a ``tests/test_site_*.py``
  module runs it with `run_example` and drives what it defines, and names it
  (the test of this module checks that every NAME is claimed by one);
* ``# not run: REASON``: another library's code, shown for comparison (the
  migration guides); it may not import triostream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```+|~~~+)python[ \t]*\n(?P<code>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.S | re.M
)


@dataclass(frozen=True)
class Example:
    page: str  # relative to docs/
    line: int  # of the opening fence
    code: str
    name: str | None  # "# example: NAME"
    not_run: str | None  # "# not run: REASON"

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def examples(pattern: str = "**/*.md") -> list[Example]:
    """Every python block of the pages matching ``pattern`` (under docs/)."""
    found = []
    for path in sorted(DOCS.glob(pattern)):
        if "_build" in path.parts:
            continue
        text = path.read_text()
        for match in _FENCE.finditer(text):
            indent = len(match.group("indent"))
            code = "\n".join(line[indent:] for line in match.group("code").splitlines()) + "\n"
            first = code.split("\n", 1)[0].strip()
            name = first.removeprefix("# example:").strip() if first.startswith("# example:") else None
            not_run = first.removeprefix("# not run:").strip() if first.startswith("# not run:") else None
            line = text.count("\n", 0, match.start()) + 1
            found.append(Example(str(path.relative_to(DOCS)), line, code, name, not_run))
    return found


def example(name: str) -> Example:
    """The one block marked ``# example: NAME``."""
    matches = [e for e in examples() if e.name == name]
    assert len(matches) == 1, f"{len(matches)} blocks are marked '# example: {name}'"
    return matches[0]


def run_example(name: str) -> dict[str, object]:
    """Execute the block marked ``# example: NAME`` as a module that is not
    ``__main__`` (so ``if __name__ == "__main__":`` does not run) and return
    its namespace."""
    block = example(name)
    namespace: dict[str, object] = {"__name__": f"docs_example_{name.replace('-', '_')}"}
    exec(compile(block.code, f"docs/{block.page}:{block.line}", "exec"), namespace)
    return namespace
