"""Sphinx configuration of dtitool's documentation site.

Build (offline; warnings are errors)::

    python -m pip install ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

The Markdown pages are read through MyST, the API reference is generated from the
numpydoc docstrings (autosummary + numpydoc), and ``examples/`` becomes a
sphinx-gallery in which every script runs at build time, as its command line
runs it: each script gets ``--out`` a temporary folder (never the source tree),
its printed output is captured, and the PNG figure it writes there is shown.
The user guide runs the README's commands (``command-output`` blocks, from
docs/sphinxext/dtitool_docs.py) in a temporary folder and shows what each prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # a source checkout builds without an install too
sys.path.insert(0, str(DOCS / "sphinxext"))

import dtitool  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

project = "dtitool"
author = "the dtitool developers"
copyright = "2026, the dtitool developers"
release = dtitool.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "dtitool_docs",  # docs/sphinxext: the gallery's runner, command-output
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "generated/*.examples", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.codeobj.json", "auto_examples/*.md5"]
html_static_path = ["_static"]
html_css_files = ["dtitool.css"]
html_theme = "furo"
html_title = f"dtitool {release}"
# No intersphinx: the build runs offline.

# -- MyST: the existing Markdown pages as they are -------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference ----------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False

# -- sphinx-gallery: examples/ as a gallery ---------------------------------------
# Every script runs, as its command line runs it (docs/sphinxext/dtitool_docs.py:
# --out a temporary folder; the cluster example its own --quick grid), and its
# page shows what it printed and the figure it wrote.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",  # every script runs, not only plot_*.py
    "ignore_pattern": r"__init__\.py",
    "reset_argv": "dtitool_docs.reset_argv",
    "image_scrapers": ("dtitool_docs.output_files_scraper",),
    "abort_on_example_error": True,
    # Run every example on every build, even one whose source has not changed
    # since the last build (docs/auto_examples keeps that build's output).
    "run_stale_examples": True,
    "download_all_examples": False,
    "min_reported_time": 0,
    "within_subsection_order": "FileNameSortKey",
    "capture_repr": (),
}
