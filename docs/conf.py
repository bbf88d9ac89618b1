"""Sphinx configuration of the numpy_dl documentation site.

Build it from the repository root (the `docs` extra installs the tools):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST). The command-line page is generated from the launcher's
argparse parser and the API reference from the docstrings, so neither can drift from
the code; tests/test_docs.py builds the site with warnings as errors.
"""
import os
import sys

# Document this checkout's package, whether or not it is the one installed in the venv.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy_dl  # noqa: E402

project = "numpy_dl"
author = "numpy_dl contributors"
copyright = "2026 numpy_dl contributors (MIT License)"
version = release = numpy_dl.__version__

extensions = [
    "myst_parser",          # the pages are Markdown
    "sphinx.ext.autodoc",   # the API reference, from the docstrings
    "sphinx.ext.viewcode",  # a [source] link beside every documented object
    "sphinxarg.ext",        # the command-line page, from numpy_dl.launch.cli.build_parser
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# GitHub-style anchors for headings (`[Debugging](#debugging-single-process)`), so links
# written for the README and GitHub's Markdown view resolve here too.
myst_heading_anchors = 4

# Members in the order the source (or the module's __all__) lists them, which groups them
# as their authors did, rather than alphabetically.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
# A method without a docstring of its own (each layer's `forward`) is left out rather than
# shown again with its base class's text.
autodoc_inherit_docstrings = False
# A docstring's first line is text, never a signature: the Tensor methods' docstrings
# ("numpy_dl.autograd.ops.sum") would otherwise be taken for one and dropped.
autodoc_docstring_signature = False

# The docstrings are plain text that help() shows too, with `single backticks` around
# code: render those as code (reStructuredText's default would italicise them).
default_role = "literal"
# Leave quotes and dashes as typed: `--epochs` must not become an en dash, nor 'mse' curly
# quotes, in text a reader copies into a terminal or a script.
smartquotes = False

html_theme = "furo"
html_title = f"numpy_dl {release}"
