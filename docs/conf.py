"""Sphinx configuration: MyST Markdown pages, the Furo theme, the API from the docstrings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
# The API reference reads the pure-Python reference (annotations, source), not the compiled
# twins, which carry the same docstrings.
os.environ.setdefault("FULLDUPLEX_NO_EXTENSIONS", "1")

import fullduplex  # noqa: E402

project = "fullduplex"
author = "The fullduplex authors"
copyright = "2026, The fullduplex authors"
release = version = fullduplex.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" sections as fields of their class, not as second descriptions of the members.
napoleon_use_ivar = True

html_theme = "furo"
html_title = f"fullduplex {release}"

# Two classes are named WebSocket (asyncio and sync) on purpose; an annotation that names one
# of them unqualified is ambiguous to Sphinx, which then links neither. That, and only that,
# is not an error ("ref.python" is the ambiguous-reference warning).
suppress_warnings = ["ref.python"]
