"""Sphinx configuration of the attnapps documentation (``python -m attnapps docs`` builds and serves it).

Sphinx + furo + MyST: the docstrings are reStructuredText already (``code``, :func:`roles`), so autodoc
renders them as written; pages are Markdown (MyST). The reference pages under ``reference/_generated/``
are written at build time from the code (:mod:`attnapps_docs`), never by hand.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

project = "attnapps"
author = "the attnapps developers"
copyright = "2026, the attnapps developers"  # noqa: A001 (Sphinx's name)

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "attnapps_docs"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md", "results/saved"]  # saved printouts: included by the results pages
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "furo"
html_title = "attnapps"
html_static_path = []
