"""What goes into the wheel and the sdist, and nothing else.

    python3 .ci/check_dist.py dist/triostream-X.whl dist/triostream-X.tar.gz

The wheel: the ``triostream`` package (``py.typed`` and ``testing`` included)
and its ``.dist-info`` (LICENSE in it, the pytest plugin's entry point).
The sdist: the package, tests, docs sources, examples, benchmarks, README,
CHANGELOG, LICENSE and pyproject.toml; never CI's scripts, git's files, a
built site or bytecode. Both carry the version ``triostream/__init__.py``
declares. Exits non-zero with the reasons when something is off.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "triostream" / "__init__.py").read_text(), re.M)
FORBIDDEN = re.compile(
    r"(^|/)(\.ci|\.git|\.github|__pycache__|_build|\.mypy_cache|\.ruff_cache|\.pytest_cache)(/|$)|\.pyc$"
)


def check_wheel(path: Path, version: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(f"triostream-{version}.dist-info/entry_points.txt").decode()
    info = f"triostream-{version}.dist-info/"
    for name in names:
        if not (name.startswith("triostream/") or name.startswith(info)):
            problems.append(f"wheel: {name} does not belong")
        if FORBIDDEN.search(name):
            problems.append(f"wheel: {name} is never shipped")
    for needed in ("triostream/__init__.py", "triostream/py.typed", "triostream/testing/__init__.py"):
        if needed not in names:
            problems.append(f"wheel: {needed} missing")
    if not any(n.startswith(info) and n.endswith("LICENSE") for n in names):
        problems.append("wheel: no LICENSE in the .dist-info")
    if "triostream.testing._plugin" not in entry_points:
        problems.append("wheel: the pytest plugin's entry point is missing")
    return problems


def check_sdist(path: Path, version: str) -> list[str]:
    problems = []
    top = f"triostream-{version}/"
    with tarfile.open(path) as sdist:
        names = [m.name for m in sdist.getmembers()]
    for name in names:
        if not name.startswith(top) and name != top.rstrip("/"):
            problems.append(f"sdist: {name} is outside {top}")
        if FORBIDDEN.search(name.removeprefix(top)):
            problems.append(f"sdist: {name} is never shipped")
    for needed in (
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "triostream/__init__.py",
        "triostream/py.typed",
        "tests/conftest.py",
        "docs/conf.py",
        "docs/index.md",
        "examples/line_server.py",
    ):
        if top + needed not in names:
            problems.append(f"sdist: {needed} missing")
    return problems


def main(paths: list[str]) -> int:
    assert VERSION, "no __version__ in triostream/__init__.py"
    version = VERSION.group(1)
    problems: list[str] = []
    wheels = [Path(p) for p in paths if p.endswith(".whl")]
    sdists = [Path(p) for p in paths if p.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        problems.append(f"want one wheel and one sdist, got {paths}")
    for wheel in wheels:
        if not wheel.name.startswith(f"triostream-{version}-"):
            problems.append(f"{wheel.name}: not version {version}")
        problems += check_wheel(wheel, version)
    for sdist in sdists:
        if sdist.name != f"triostream-{version}.tar.gz":
            problems.append(f"{sdist.name}: not version {version}")
        problems += check_sdist(sdist, version)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"wheel and sdist of triostream {version}: contents as intended")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
