"""Which class a config's `cls:` names.

A class is addressable by its bare name when kaiju ships it (`BUILTIN` below, imported
only when named), when it is defined in a module listed in the config's `packages`, or
when a distribution advertises it under the `kaiju.services` entry point group. Any
class is addressable as `"package.module:Class"`. Nothing registers itself on import.

Any `aiomisc.Service` subclass qualifies, kaiju's own or not (aiomisc's `TCPServer`, a
third-party service). A module that fails to import is reported in one line naming the
module and the file and line of the error.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import traceback
from importlib.metadata import entry_points
from types import ModuleType

import aiomisc

__all__ = [
    "BUILTIN",
    "KAIJU_TOOLS_NAMES",
    "ClassNotFound",
    "Registry",
    "describe_error",
    "implementations",
    "import_module",
    "import_object",
    "is_async_callable",
]

ENTRY_POINT_GROUP = "kaiju.services"

# Class name -> "module:attribute"; imported lazily, the first time a config names it.
BUILTIN: dict[str, str] = {
    # runtime
    # rpc and http
    "RPCServer": "kaiju.rpc.server:RPCServer",
    "HTTPServer": "kaiju.http.server:HTTPServer",
    "HTTPClient": "kaiju.http.client:HTTPClient",
    "HTTPRPCClient": "kaiju.http.client:HTTPRPCClient",
    "WSRPCClient": "kaiju.http.ws_client:WSRPCClient",
    "CacheSessions": "kaiju.auth.sessions:CacheSessions",
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
    # server push
    "Events": "kaiju.events.base:Events",
    "RedisEvents": "kaiju.events.redis:RedisEvents",
    # operations
    "Metrics": "kaiju.metrics.service:Metrics",
    "Telemetry": "kaiju.telemetry.service:Telemetry",
}


# kaiju-tools' class names and what takes their place in kaiju (docs/migration.rst)
KAIJU_TOOLS_NAMES: dict[str, str] = {
    "LoggingService": "logging is no service in kaiju: configure it in the top-level logging: section",
    "SessionService": "CacheSessions keeps the sessions (with AuthService for logins)",
    "AuthenticationService": "AuthService checks passwords and tokens",
    "LoginService": "AuthService has auth.login, auth.logout, auth.token and auth.refresh",
    "UserService": "a UserStore (ConfigUsers, or your own subclass) gives AuthService its users",
    "JSONRPCServer": "RPCServer is the JSON-RPC dispatcher",
    "HTTPService": "HTTPClient is the HTTP client service (HTTPServer serves HTTP)",
    "RPCClientService": "HTTPRPCClient calls another app's RPC methods over HTTP",
    "StreamRPCClient": "StreamProducer writes RPC requests to a stream",
    "Scheduler": "each task is a service of its own: PeriodicTask or CronTask in the config, or Tasks.add()",
    "Listener": "StreamListener runs the requests of a stream topic",
    "RedisTransportService": "RedisConnection holds the Redis client",
    "RedisCacheService": "RedisCache (or MemoryCache in one process)",
    "LocksService": "RedisLocks (or MemoryLocks in one process)",
    "RedisLocksService": "RedisLocks (or MemoryLocks in one process)",
    "ApplicationService": "kaiju.Service is the base class of a service",
    "ContextableService": "kaiju.Service is the base class of a service",
    "UserInterface": "a UserStore (ConfigUsers, or your own subclass) gives AuthService its users",
    "CacheService": "MemoryCache in one process, RedisCache (with a RedisConnection) for many",
    "LockService": "MemoryLocks in one process, RedisLocks (with a RedisConnection) for many",
    "SessionInterface": "CacheSessions keeps the sessions",
    "TokenClientService": "HTTPRPCClient with an Authorization header (auth.token gives the tokens)",
}


# kaiju's classes that implement each of its interfaces, by the interface's name: what an
# error can suggest for a missing dependency without importing every backend
_IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "Cache": ("MemoryCache", "RedisCache"),
    "Locks": ("MemoryLocks", "RedisLocks"),
    "StreamBackend": ("MemoryStream", "RedisStream"),
    "SessionStore": ("CacheSessions",),
    "UserStore": ("ConfigUsers",),
    "Authenticator": ("AuthService",),
    "Streams": ("Streams",),
    "Events": ("Events", "RedisEvents"),
}


def implementations(base: type) -> tuple[str, ...]:
    """kaiju's classes a config can name (`cls:`) for a dependency of type `base`."""
    for klass in base.__mro__:
        if klass.__name__ in _IMPLEMENTATIONS and klass.__module__.startswith("kaiju."):
            return _IMPLEMENTATIONS[klass.__name__]
    return (base.__name__,) if base.__name__ in BUILTIN else ()


class ClassNotFound(LookupError):
    """A `cls:` value that names no known class; the message says what was tried."""


def describe_error(exc: BaseException) -> str:
    """`exc` in one line with where it was raised: `SyntaxError: invalid syntax (app/x.py, line 3)`.

    The place is the innermost frame in the user's own code (not kaiju's, not the standard
    library's or an installed package's), so an error in a user's module names that module's
    file and line; with no such frame (a module that does not exist) no place is given.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    # the user's code; else (an app installed as a package) anything but kaiju and the stdlib
    not_user_code = _not_user_code()
    found = [f for f in frames if _outside(f.filename, not_user_code)] or [
        f for f in frames if _outside(f.filename, not_user_code[:2])
    ]
    where = f" ({found[-1].filename}, line {found[-1].lineno})" if found else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _outside(filename: str, roots: tuple[str, ...]) -> bool:
    path = os.path.abspath(filename)
    return not any(path.startswith(root) for root in roots)


def _not_user_code() -> tuple[str, ...]:
    """The folders of kaiju, the standard library, then installed packages (asked only to
    explain an error: sysconfig is not imported for a start that has none)."""
    import sysconfig

    paths = sysconfig.get_paths()
    return (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.abspath(paths["stdlib"]) + os.sep,
        *{os.path.abspath(paths[key]) + os.sep for key in ("purelib", "platlib")},
    )


def import_module(name: str, what: str = "module") -> ModuleType:
    """`importlib.import_module(name)`; any failure (ImportError, SyntaxError, an exception the
    module raises) becomes ClassNotFound naming the module and the file and line at fault."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise ClassNotFound(f'cannot import {what} "{name}": {describe_error(exc)}') from None


def import_object(ref: str) -> object:
    """Import `"package.module:attr"` (or `"package.module.attr"`)."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
    else:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise ClassNotFound(f'expected "package.module:Class", got "{ref}"')
    obj = import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ClassNotFound(f'module "{module_name}" has no attribute "{attr}"') from None
    return obj


def is_async_callable(obj: object) -> bool:
    """Whether calling `obj` returns a coroutine: an `async def`, or an object whose
    `__call__` is one."""
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(type(obj).__call__))


def _module_services(module: ModuleType) -> dict[str, type[aiomisc.Service]]:
    """The service classes a module defines, or imports from its own top-level package (an
    app's `app.services` importing `Warehouse` from `app.warehouse`), by name; classes
    imported from other distributions (kaiju's, aiomisc's) are not the app's own."""
    found: dict[str, type[aiomisc.Service]] = {}
    top = module.__name__.split(".", 1)[0]
    for name, obj in vars(module).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, aiomisc.Service)
            and (obj.__module__ == top or obj.__module__.startswith(top + "."))
            and not inspect.isabstract(obj)
            and not name.startswith("_")
        ):
            found[name] = obj
    return found


class Registry:
    """Maps class names to service classes for one config; built anew for each entrypoint."""

    def __init__(self, packages: list[str] | tuple[str, ...] = (), *, use_entry_points: bool = True):
        self._refs: dict[str, str] = dict(BUILTIN)
        self._classes: dict[str, type[aiomisc.Service]] = {}
        # the entry points are read when a bare name is neither built in nor a package's: reading
        # them means reading every installed distribution's metadata, which most configs never need
        self._entry_points_unread = use_entry_points
        for package in packages:
            self.add_package(package)

    def _read_entry_points(self) -> None:
        """Add the names the `kaiju.services` entry points advertise (a built-in name wins)."""
        if self._entry_points_unread:
            self._entry_points_unread = False
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._refs.setdefault(ep.name, ep.value)

    def add_package(self, package: str) -> None:
        """Make the service classes of `package` (a module) addressable by name: those it
        defines or imports from its own top-level package, and, for a package with a
        `services` module (where kaiju-tools looked), those of `<package>.services` too.

        Raises ClassNotFound when a module fails to import (naming the file and line), and for
        kaiju-tools itself, which a kaiju-tools config lists."""
        if package.split(".", 1)[0] == "kaiju_tools":
            # never imported: kaiju-tools replaces the logger class and fills registries on import
            raise ClassNotFound(
                f'"{package}" is kaiju-tools: kaiju finds its own classes without a packages entry, '
                "so remove it (docs/migration.rst)"
            )
        module = import_module(package, "package")
        self._classes.update(_module_services(module))
        if hasattr(module, "__path__") and importlib.util.find_spec(f"{package}.services") is not None:
            self._classes.update(_module_services(import_module(f"{package}.services", "package")))

    def add(self, cls: type[aiomisc.Service], name: str | None = None) -> None:
        """Make one class addressable as `name` (default: its class name)."""
        self._classes[name or cls.__name__] = cls

    def names(self) -> list[str]:
        self._read_entry_points()
        return sorted({*self._refs, *self._classes})

    def implementations(self, base: type) -> list[str]:
        """Names of the classes a config could add for a dependency of type `base`: kaiju's
        own (see `implementations`) and those of the config's packages."""
        found = set(implementations(base))
        found.update(
            name for name, cls in self._classes.items() if issubclass(cls, base) and not inspect.isabstract(cls)
        )
        return sorted(found)

    def resolve(self, name: str) -> type[aiomisc.Service]:
        """The class `name` refers to; raises ClassNotFound with close matches."""
        cls = self._classes.get(name)
        if cls is None:
            if name not in self._refs and ":" not in name and "." not in name:
                self._read_entry_points()
            if name in self._refs:
                cls = import_object(self._refs[name])  # type: ignore[assignment]
            elif ":" in name or "." in name:
                cls = import_object(name)  # type: ignore[assignment]
            else:
                if name in KAIJU_TOOLS_NAMES:
                    raise ClassNotFound(
                        f'"{name}" is kaiju-tools\' class: {KAIJU_TOOLS_NAMES[name]} (docs/migration.rst)'
                    )
                import difflib  # only an unknown name needs suggestions

                close = difflib.get_close_matches(name, self.names(), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ClassNotFound(
                    f'unknown service class "{name}"{hint}; list its module in "packages" or write "module:Class"'
                )
            if not (inspect.isclass(cls) and issubclass(cls, aiomisc.Service)):
                raise ClassNotFound(f'"{name}" is not an aiomisc.Service subclass (kaiju.Service is one)')
            self._classes[name] = cls
        return cls
