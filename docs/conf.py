"""Sphinx configuration: the triostream site.

Built by ``.ci/run`` with ``sphinx-build -W -n`` (warnings and broken
references are errors). Offline: intersphinx reads the inventories in
``_intersphinx/`` (see ``_intersphinx/make_trio_inv.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import triostream  # noqa: E402

project = "triostream"
author = "the triostream developers"
copyright = "2026, the triostream developers"
version = release = triostream.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_intersphinx", "tests", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# The docstrings use Trio's convention: `name` is a cross-reference.
default_role = "obj"
nitpicky = True

# Google-style sections (Args:, Returns:, Raises:) in the docstrings.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Attributes: sections become attribute entries (link targets); their types
# come from the signatures, not repeated there.
napoleon_use_ivar = False
napoleon_attr_annotations = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True}

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(ROOT / "docs" / "_intersphinx" / "python.inv")),
    "trio": ("https://trio.readthedocs.io/en/stable", str(ROOT / "docs" / "_intersphinx" / "trio.inv")),
}
intersphinx_disabled_reftypes = ["std:doc"]

# Names no inventory here has: re.Pattern (the Python 3.11 documentation does
# not declare it as a class) and hypothesis's strategy type (no offline
# inventory for hypothesis).
nitpick_ignore = [
    ("py:class", "re.Pattern"),
    ("py:class", "SearchStrategy"),
    ("py:class", "hypothesis.strategies.SearchStrategy"),
]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"triostream {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None
if os.environ.get("TRIOSTREAM_DOCS_NO_VIEWCODE"):
    extensions.remove("sphinx.ext.viewcode")
