"""Sphinx configuration for the ipkernel documentation (``sphinx-build docs docs/_build``)."""
project = "ipkernel"
author = "the ipkernel developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
html_theme = "alabaster"
exclude_patterns = ["_build"]
