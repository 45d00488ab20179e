"""kaiju: a config-driven service runner for asyncio back ends, built on aiomisc.

The public API is re-exported here and imported lazily, so `import kaiju` loads
nothing but this module and changes nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "App": "kaiju.runtime.service",
    "Namespace": "kaiju.runtime.service",
    "Service": "kaiju.runtime.service",
    "Entrypoint": "kaiju.runtime.entrypoint",
    "entrypoint": "kaiju.runtime.entrypoint",
    "run": "kaiju.runtime.entrypoint",
    "ConfigError": "kaiju.config.errors",
    "load_config": "kaiju.config.loader",
    "rpc": "kaiju.rpc",
    "command": "kaiju.commands",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from kaiju import rpc
    from kaiju.commands import command
    from kaiju.config.errors import ConfigError
    from kaiju.config.loader import load_config
    from kaiju.runtime.entrypoint import Entrypoint, entrypoint, run
    from kaiju.runtime.service import App, Namespace, Service


def _lazy_getattr(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` (every package front door uses it): `exports`
    maps a name to the module defining it (a name that is itself a submodule,
    `"<package>.<name>"`, is the module). The value is cached in `namespace` (the package's
    globals), so each name is looked up once."""

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name)
        value = module if module_name == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return __getattr__


__getattr__ = _lazy_getattr("kaiju", _EXPORTS, globals())
