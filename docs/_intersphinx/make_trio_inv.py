"""Write ``trio.inv``, an intersphinx inventory of Trio's documented API.

The docs build runs offline (CI reaches package registries only), so the
inventories intersphinx reads are files in this directory: ``python.inv`` is
Debian's ``python3.11-doc`` ``objects.inv``; ``trio.inv`` is made by this
script from Trio's documentation sources (``docs/source/reference-*.rst`` of a
checkout of python-trio/trio) and the installed ``trio``: every object those
pages document with an ``auto*`` or plain directive, and the public members of
the classes they document with ``:members:``. Links point to
https://trio.readthedocs.io/en/stable/.

    python docs/_intersphinx/make_trio_inv.py PATH/TO/trio/docs/source docs/_intersphinx/trio.inv
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import zlib
from pathlib import Path

import trio

DIRECTIVE = re.compile(
    r"^(\s*)\.\.\s+(auto)?(function|class|exception|method|attribute|data|module|currentmodule|decorator)::\s+(\S+)"
)
ROLE = {
    "function": "function",
    "decorator": "function",
    "class": "class",
    "exception": "exception",
    "method": "method",
    "attribute": "attribute",
    "data": "data",
    "module": "module",
}


def resolve(dotted: str) -> object | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def entries(source: Path) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for page in sorted(source.glob("reference-*.rst")):
        uri = page.stem + ".html"
        module = "trio"
        classes: list[tuple[int, str]] = []  # (indent, class name) for nested method directives
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines):
            match = DIRECTIVE.match(line)
            if not match:
                continue
            indent, auto, kind, name = len(match.group(1)), match.group(2), match.group(3), match.group(4)
            name = name.split("(")[0]
            if kind in ("module", "currentmodule"):
                module = name
                if kind == "module":
                    found[name] = ("module", uri + "#module-" + name)
                continue
            while classes and classes[-1][0] >= indent:
                classes.pop()
            if kind in ("method", "attribute") and classes and "." not in name:
                full = classes[-1][1] + "." + name
            elif name.startswith(module + ".") or name.startswith("trio."):
                full = name
            else:
                full = module + "." + name
            found[full] = (ROLE[kind], uri + "#" + full)
            if kind in ("class", "exception"):
                classes.append((indent, full))
                options = " ".join(lines[index + 1 : index + 6])
                if auto and ":members:" in options:
                    obj = resolve(full)
                    if inspect.isclass(obj):
                        for member, value in vars(obj).items():
                            if member.startswith("_"):
                                continue
                            method = callable(value) or isinstance(value, (staticmethod, classmethod))
                            role = "method" if method else "attribute"
                            found.setdefault(full + "." + member, (role, uri + "#" + full + "." + member))
    return found


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    items = entries(source)
    body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in sorted(items.items()))
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Trio\n"
        f"# Version: {trio.__version__}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    out.write_bytes(header.encode() + zlib.compress(body.encode()))
    print(f"{len(items)} objects -> {out}")


if __name__ == "__main__":
    main()
