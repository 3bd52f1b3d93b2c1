"""Print a pip constraints file pinning every declared lower bound.

Reads ``pyproject.toml``: the build backend (``build-system.requires``), the
runtime dependencies and the ``test`` extra. Each ``name>=X`` becomes
``name==X`` (the environment marker is kept), so ``pip install -e '.[test]'``
with ``PIP_CONSTRAINT=<this output>`` installs the oldest versions we claim to
support, the build backend in pip's isolated build environment included
(``-c`` would not reach that one); pip resolves everything not listed
(transitive dependencies) as usual.

Every requirement must have a ``>=`` lower bound, or this script fails: an
unbounded dependency is a minimum nobody tested. The ``lint`` extra (ruff,
mypy, pyright) is not read: CI runs the linters once, on their latest
versions, and the minimum-version pass does not install them.

Usage: python .ci/min_constraints.py [pyproject.toml]  (Python >= 3.11, or tomli installed)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's dependency tomli is the same parser
    import tomli as tomllib

REQUIREMENT = re.compile(
    r"""^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)   # distribution name
        (?:\[[^\]]*\])?                          # extras: not allowed in a constraints file
        \s*>=\s*(?P<version>[^,;\s]+)\s*         # the lower bound, and no other specifier
        (?P<marker>;.*)?$""",
    re.X,
)


def constraints(pyproject: Path) -> list[str]:
    config = tomllib.loads(pyproject.read_text())
    project = config["project"]
    requirements = [
        *config["build-system"]["requires"],
        *project["dependencies"],
        *project["optional-dependencies"]["test"],
    ]
    lines = []
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"{pyproject}: {requirement!r} has no plain 'name>=version' lower bound")
        name = match["name"].lower().replace("_", "-")
        marker = f" {match['marker'].strip()}" if match["marker"] else ""
        lines.append(f"{name}=={match['version']}{marker}")
    return lines


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(constraints(path)))


if __name__ == "__main__":
    main()
