"""kaiju: a config-driven service runner for asyncio back ends, built on aiomisc.

The public API is re-exported here and imported lazily, so `import kaiju` loads
nothing but this module and changes nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju import rpc
    from kaiju.commands import command
    from kaiju.config.errors import ConfigError
    from kaiju.config.loader import load_config
    from kaiju.runtime.entrypoint import Entrypoint, entrypoint, run
    from kaiju.runtime.service import App, Namespace, Service


def _front_door(package: str, source: str, namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The module `__getattr__` of a package front door (every one uses it).

    The names a front door exports are declared once, as the imports of its
    `if TYPE_CHECKING:` block: type checkers read them there, and this reads the same block
    (from `source`, the front door's file, on first use) to import each name lazily, from
    the module the import names (`from <package> import <name>` names a submodule).
    `__all__` is those names. A value is cached in `namespace` (the package's globals), so
    each name is looked up once.
    """
    exports: dict[str, str] = {}

    def table() -> dict[str, str]:
        if not exports:
            exports.update(_declared(package, source))
        return exports

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            value: Any = [n for n in ("__version__",) if n in namespace] + list(table())
        elif name == "_EXPORTS":
            value = dict(table())
        else:
            module_name = table().get(name)
            if module_name is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            module = importlib.import_module(module_name)
            value = module if module_name == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return __getattr__


def _declared(package: str, source: str) -> dict[str, str]:
    """`{name: module}` of the imports in the `if TYPE_CHECKING:` block of the file `source`."""
    import ast

    with open(source, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    for alias in stmt.names:
                        found[alias.asname or alias.name] = (
                            f"{package}.{alias.name}" if stmt.module == package else stmt.module
                        )
    return found


__getattr__ = _front_door(__name__, __file__, globals())
