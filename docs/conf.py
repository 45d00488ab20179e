"""Sphinx configuration for kaiju's documentation."""

project = "kaiju"
author = "kaiju authors"
release = "0.1.0"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
