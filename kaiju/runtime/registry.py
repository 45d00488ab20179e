"""Which class a config's `cls:` names.

A class is addressable by its bare name when kaiju ships it (`BUILTIN` below, imported
only when named), when it is defined in a module listed in the config's `packages`, or
when a distribution advertises it under the `kaiju.services` entry point group. Any
class is addressable as `"package.module:Class"`. Nothing registers itself on import.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from importlib.metadata import entry_points
from types import ModuleType

from kaiju.runtime.service import Service

__all__ = ["BUILTIN", "ClassNotFound", "Registry"]

ENTRY_POINT_GROUP = "kaiju.services"

# Class name -> "module:attribute"; imported lazily, the first time a config names it.
BUILTIN: dict[str, str] = {
    # runtime
    "DemoService": "kaiju.demo:DemoService",
    # rpc and http
    "RPCServer": "kaiju.rpc.server:RPCServer",
    "HTTPServer": "kaiju.http.server:HTTPServer",
    "HTTPClient": "kaiju.http.client:HTTPClient",
    "HTTPRPCClient": "kaiju.http.client:HTTPRPCClient",
    "CacheSessions": "kaiju.rpc.sessions:CacheSessions",
    "AuthService": "kaiju.auth.service:AuthService",
    "ConfigUsers": "kaiju.auth.users:ConfigUsers",
    # tasks
    "PeriodicTask": "kaiju.tasks:PeriodicTask",
    "CronTask": "kaiju.tasks:CronTask",
    "Tasks": "kaiju.tasks:Tasks",
    # redis, cache and locks
    "RedisConnection": "kaiju.redis:RedisConnection",
    "MemoryCache": "kaiju.cache.memory:MemoryCache",
    "RedisCache": "kaiju.cache.redis:RedisCache",
    "MemoryLocks": "kaiju.locks.memory:MemoryLocks",
    "RedisLocks": "kaiju.locks.redis:RedisLocks",
    # streams
    "MemoryStream": "kaiju.streams.memory:MemoryStream",
    "RedisStream": "kaiju.streams.redis:RedisStream",
    "Streams": "kaiju.streams.service:Streams",
    "StreamListener": "kaiju.streams.listener:StreamListener",
    "StreamProducer": "kaiju.streams.producer:StreamProducer",
}


class ClassNotFound(LookupError):
    """A `cls:` value that names no known class; the message says what was tried."""


def import_object(ref: str) -> object:
    """Import `"package.module:attr"` (or `"package.module.attr"`)."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
    else:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise ClassNotFound(f'expected "package.module:Class", got "{ref}"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ClassNotFound(f'cannot import module "{module_name}": {exc}') from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ClassNotFound(f'module "{module_name}" has no attribute "{attr}"') from None
    return obj


def _module_services(module: ModuleType) -> dict[str, type[Service]]:
    found: dict[str, type[Service]] = {}
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, Service) and obj.__module__ == module.__name__:
            if not inspect.isabstract(obj) and not name.startswith("_"):
                found[name] = obj
    return found


class Registry:
    """Maps class names to service classes for one config; built anew for each entrypoint."""

    def __init__(self, packages: list[str] | tuple[str, ...] = (), *, use_entry_points: bool = True):
        self._refs: dict[str, str] = dict(BUILTIN)
        self._classes: dict[str, type[Service]] = {}
        if use_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._refs.setdefault(ep.name, ep.value)
        for package in packages:
            self.add_package(package)

    def add_package(self, package: str) -> None:
        """Make the Service subclasses defined in `package` (a module) addressable by name."""
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ClassNotFound(f'cannot import package "{package}": {exc}') from None
        self._classes.update(_module_services(module))

    def add(self, cls: type[Service], name: str | None = None) -> None:
        """Make one class addressable as `name` (default: its class name)."""
        self._classes[name or cls.__name__] = cls

    def names(self) -> list[str]:
        return sorted({*self._refs, *self._classes})

    def resolve(self, name: str) -> type[Service]:
        """The class `name` refers to; raises ClassNotFound with close matches."""
        cls = self._classes.get(name)
        if cls is None:
            if name in self._refs:
                cls = import_object(self._refs[name])  # type: ignore[assignment]
            elif ":" in name or "." in name:
                cls = import_object(name)  # type: ignore[assignment]
            else:
                close = difflib.get_close_matches(name, self.names(), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ClassNotFound(
                    f'unknown service class "{name}"{hint}; list its module in "packages" or write "module:Class"'
                )
            if not (inspect.isclass(cls) and issubclass(cls, Service)):
                raise ClassNotFound(f'"{name}" is not a kaiju.Service subclass')
            self._classes[name] = cls
        return cls
