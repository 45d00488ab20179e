"""Settings documented once: each setting's docstring, read from its class's source.

A setting is an annotated class attribute; the string right below it is its docstring,
as Sphinx reads attribute docstrings:

    class Poller(kaiju.Service):
        interval: Positive = 1.0
        \"\"\"Seconds between two polls.\"\"\"

`setting_docs` reads them (with `ast`, from the source of the class and its bases), and
`settings_table` renders the settings of a class as the reST table the docs show: the
docs build makes every table of settings from them (the `kaiju-settings` directive in
docs/conf.py), so a setting is written once, in its class.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from typing import Any

import aiomisc

from kaiju.runtime.service import Service, dependencies_of, settings_fields

__all__ = ["setting_docs", "settings_table", "undocumented_settings"]


def setting_docs(cls: type) -> dict[str, str]:
    """`{setting: docstring}` of `cls` and its bases (a subclass's docstring wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, Service, aiomisc.Service) or not issubclass(klass, aiomisc.Service):
            continue
        docs.update(_class_docs(klass))
    return docs


def _class_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # made at run time: no source to read
        return {}
    body = ast.parse(source).body[0]
    found: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return found
    statements = body.body
    for stmt, after in zip(statements, [*statements[1:], None], strict=True):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[stmt.target.id] = inspect.cleandoc(after.value.value)
    return found


def undocumented_settings(cls: type[aiomisc.Service]) -> list[str]:
    """The settings of `cls` that have no docstring."""
    docs = setting_docs(cls)
    return [name for name in settings_fields(cls) if not docs.get(name)]


def settings_table(cls: type[aiomisc.Service], own: bool = False) -> str:
    """The settings of `cls` as a reST list table: setting, type, default, meaning; its
    dependencies too (a service name, found by type when not given). `own`: only those
    the class itself declares (its bases' are shown with the base)."""
    docs = setting_docs(cls)
    declared = inspect.get_annotations(cls) if own else None
    rows = ["   * - setting", "     - type", "     - default", "     - meaning"]
    for dep in dependencies_of(cls):
        if declared is None or dep.attr in declared:
            found = "found by type" + (", if any" if dep.optional else "")
            rows += _row(dep.attr, f"service name ({dep.cls.__name__})", found, docs.get(dep.attr, ""))
    for name, (hint, default) in settings_fields(cls).items():
        if declared is None or name in declared:
            shown = "required" if default is inspect.Parameter.empty else f"``{_default(default)}``"
            rows += _row(name, _type_name(hint), shown, docs.get(name, ""))
    return "\n".join([".. list-table::", "   :header-rows: 1", "   :widths: 20 15 12 53", "", *rows, ""])


def _row(name: str, kind: str, default: str, doc: str) -> list[str]:
    meaning = " ".join(doc.split())
    return [f"   * - ``{name}``", f"     - {kind}", f"     - {default}", f"     - {meaning}"]


def _default(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


def _type_name(hint: Any) -> str:
    """A setting's type as the docs say it: `int >= 1`, `float (s) > 0`, `str or null`, ..."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *metas = args
        bounds = [
            f"{op} {getattr(meta, key)}"
            for meta in metas
            for key, op in _BOUNDS
            if getattr(meta, key, None) is not None
        ]
        return " ".join([_type_name(base), *bounds])
    if origin in (typing.Union, _UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " or ".join(f'"{a}"' for a in args)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
_UnionType = type(int | None)
