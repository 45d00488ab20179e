"""App commands: `kaiju-run` commands an application adds.

    import kaiju

    def arguments(parser):
        parser.add_argument("path")

    @kaiju.command(help="import users from a CSV file", arguments=arguments)
    async def import_users(app, args):          # the app's services are started around it
        await app.services["users"].load_csv(args.path)

A command is found through the `kaiju.commands` entry point group of an installed
distribution (`import-users = "myapp.cli:import_users"`) or the config's `commands:` list
(`"myapp.cli:import_users"`). A function marked `start=True` (the default for an `async
def`) gets the started `App`; one marked `start=False` gets the `LoadedConfig` and starts
nothing. It returns an exit status (None is 0).
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = ["ENTRY_POINT_GROUP", "AppCommand", "command", "load_command"]

ENTRY_POINT_GROUP = "kaiju.commands"
_MARK = "__kaiju_command__"


@dataclass(frozen=True)
class AppCommand:
    """An app command: its name, help line, the function, whether the app's services start
    around it, and a function adding its own arguments to its parser."""

    name: str
    help: str
    func: Callable[..., Any]
    start: bool
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


def command(
    func: Callable | None = None,
    /,
    *,
    name: str | None = None,
    help: str | None = None,
    start: bool | None = None,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Any:
    """Mark `func(app_or_config, args)` as a `kaiju-run` command (bare or with options).

    `name` defaults to the function's name with `-` for `_`, `help` to the first line of its
    docstring, `start` to whether it is an `async def` (started services: it gets the `App`;
    else the `LoadedConfig`).
    """

    def mark(f: Callable) -> Callable:
        setattr(f, _MARK, _describe(f, name, help, start, arguments))
        return f

    return mark(func) if func is not None else mark


def _describe(f: Callable, name: str | None, help: str | None, start: bool | None, arguments: Any) -> AppCommand:
    doc = (inspect.getdoc(f) or "").strip().split("\n")[0]
    is_async = inspect.iscoroutinefunction(f)
    return AppCommand(
        name=name or f.__name__.replace("_", "-"),
        help=help or doc or f"app command {f.__module__}:{f.__qualname__}",
        func=f,
        start=is_async if start is None else start,
        arguments=arguments,
    )


def load_command(ref: str, name: str | None = None) -> AppCommand:
    """The command `ref` ("module:function") names; raises ImportError or TypeError saying why."""
    from kaiju.runtime.registry import ClassNotFound, import_object

    try:
        obj = import_object(ref)
    except ClassNotFound as exc:
        raise ImportError(str(exc)) from None
    if isinstance(obj, AppCommand):
        return obj
    if not callable(obj):
        raise TypeError(f'"{ref}" is not a function')
    marked = getattr(obj, _MARK, None)
    found = marked if isinstance(marked, AppCommand) else _describe(obj, None, None, None, None)
    return found if name is None else AppCommand(name, found.help, found.func, found.start, found.arguments)


def installed_commands() -> list[tuple[str, str]]:
    """`(name, "module:function")` of the commands installed distributions declare."""
    return [(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)]
