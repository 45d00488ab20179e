"""Sphinx configuration for kaiju's documentation."""

project = "kaiju"
author = "kaiju authors"
release = "0.1.0"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"

# -- settings tables, made from the settings' docstrings (kaiju.runtime.settings_docs) -------------
import importlib  # noqa: E402 -- the directive below is the only code of this file

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive, directives  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402


class SettingsTable(Directive):
    """``.. kaiju-settings:: package.module:Class`` (``:own:``: only what the class itself declares)."""

    required_arguments = 1
    option_spec = {"own": directives.flag}  # noqa: RUF012 -- docutils reads it from the class

    def run(self):
        from kaiju.runtime.settings_docs import settings_table

        module, _, name = self.arguments[0].partition(":")
        cls = getattr(importlib.import_module(module), name)
        node = nodes.section()
        node.document = self.state.document
        table = settings_table(cls, own="own" in self.options)
        self.state.nested_parse(StringList(table.splitlines(), source=f"settings of {name}"), 0, node)
        return node.children


def setup(app):
    app.add_directive("kaiju-settings", SettingsTable)
    return {"parallel_read_safe": True}
