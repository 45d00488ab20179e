"""The service base class: an `aiomisc.Service` with a name, a logger and the app it runs in.

Settings arrive as keyword arguments and become attributes, exactly as in aiomisc:
class annotations give their types and defaults, `__required__` names the ones that
must be given. An annotation whose type is a `Service` subclass (or `Optional` of one)
is not a setting but a dependency: the runtime sets it to a service instance before
`start()`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

import aiomisc

from kaiju.annotations import class_hints, function_hints
from kaiju.logging import KaijuLogger

__all__ = [
    "App",
    "Dependency",
    "Namespace",
    "Service",
    "SettingError",
    "check_listen_address",
    "dependencies_of",
    "listen_address",
    "same_host",
    "settings_fields",
]


class Namespace:
    """A dotted key prefix for keys in shared stores (cache, locks, streams).

    >>> Namespace("dev", "shop").get_key("_cache", "user", 1)
    'dev.shop._cache.user.1'
    """

    __slots__ = ("prefix",)

    def __init__(self, *parts: str):
        self.prefix = ".".join(str(p) for p in parts if p != "")

    def get_key(self, *parts: Any) -> str:
        """Join the prefix and `parts` with dots."""
        return ".".join((self.prefix, *map(str, parts))) if self.prefix else ".".join(map(str, parts))

    def child(self, *parts: Any) -> Namespace:
        """A namespace one or more levels below this one."""
        return Namespace(self.get_key(*parts))

    def __str__(self) -> str:
        return self.prefix

    def __repr__(self) -> str:
        return f"Namespace({self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)


class App:
    """What the services of one entrypoint share: the app's identity and its services.

        `shutdown_timeout` is the budget of the whole stop, so a service can keep its own
        graceful wait inside it. `started` is an `asyncio.Event` set once every service has started; `stopping`
    is true from the moment the stop begins; `managed` is true
        when a kaiju entrypoint (or `kaiju.testing.services.started`) runs the app and so will
        set it. `transports` is false when the app runs for `kaiju-run call` or an app command:
        its transports are left out, and a task scheduled at run time (`Tasks.add`) does not
        fire. One `App` exists per entrypoint; nothing here is global.
    """

    def __init__(
        self,
        name: str = "app",
        env: str = "dev",
        version: str = "0.0.0",
        *,
        debug: bool = False,
        etc: dict[str, Any] | None = None,
        shutdown_timeout: float = 30.0,
    ):
        self.name = name
        self.env = env
        self.version = version
        self.debug = debug
        self.shutdown_timeout = shutdown_timeout  # seconds the whole stop may take (main.shutdown_timeout)
        self.etc: dict[str, Any] = etc if etc is not None else {}
        self.namespace = Namespace(env, name)
        self.shared_namespace = Namespace(env, "_shared")
        self.services: dict[str, aiomisc.Service] = {}  # kaiju services, and any other aiomisc ones
        self.logger = KaijuLogger(logging.getLogger(name))
        # set by the entrypoint once every layer has started; transports that open early
        # (HTTP, streams) hold requests until then -- when a kaiju entrypoint manages the app
        self.started = asyncio.Event()
        self.managed = False
        self.stopping = False  # set by the entrypoint before the first service stops: readiness turns 503 first
        self.transports = True  # False under `kaiju-run call` and app commands: no transports, no schedules
        self.events: Any = None  # the app's Events service while it runs (kaiju.events): what publish() uses

    async def publish(self, topic: str, data: Any = None) -> None:
        """Publish the event `topic` with `data` through the app's `Events` service: every
        WebSocket subscribed to a matching topic, in every process of the app, gets it as a
        JSON-RPC notification. Raises RuntimeError when the app runs no Events service, and
        what `Events.publish` raises."""
        if self.events is None:
            raise RuntimeError(
                "the app has no Events service to publish through: add `cls: Events` (one process) "
                "or `cls: RedisEvents` (every process) to its services"
            )
        await self.events.publish(topic, data)

    def __repr__(self) -> str:
        return f"App(name={self.name!r}, env={self.env!r})"


class Dependency(NamedTuple):
    """A dependency declared by a class annotation: `attr: ServiceClass`."""

    attr: str
    cls: type[aiomisc.Service]
    optional: bool


class Service(aiomisc.Service):
    """Base class of every kaiju service.

    Class attributes a subclass may set:

    - `service_name`: the default instance name (else the class name);
    - `transport`: True for services bringing work in from outside (HTTP, streams, schedules);
    - annotations with defaults: the settings, given as keyword arguments;
    - `__required__`: settings that must be given;
    - annotations typed with a `Service` subclass: dependencies (see `dependencies()`).

    Each instance has `name`, `app` (an `App`) and `logger` (a child of the app's logger,
    accepting keyword extras: `self.logger.info("saved", user_id=1)`).
    """

    service_name: ClassVar[str | None] = None
    # True for services that bring work in from outside (HTTP, stream listeners, schedules):
    # `kaiju-run call` leaves them out, so a one-off call neither binds ports nor consumes.
    transport: ClassVar[bool] = False
    # names the runtime owns; never settings
    _base_attrs: ClassVar[frozenset[str]] = frozenset(
        {"name", "app", "logger", "loglevel", "loop", "service_name", "transport"}
    )

    name: str
    app: App
    logger: KaijuLogger

    def __init__(
        self, *, name: str | None = None, app: App | None = None, loglevel: str | int | None = None, **kwargs: Any
    ):
        self.name = name or self.default_name()
        self.app = app if app is not None else App()
        self.loglevel = loglevel
        self.logger = self._make_logger()
        super().__init__(**kwargs)

    # -- identity ---------------------------------------------------------

    @classmethod
    def default_name(cls) -> str:
        """The instance name used when the config gives none."""
        return cls.service_name or cls.__name__

    def bind(self, app: App, loglevel: str | int | None = None) -> None:
        """Attach the service to `app` (called by the runtime before `start()`)."""
        self.app = app
        if loglevel is not None:
            self.loglevel = loglevel
        self.logger = self._make_logger()

    def _make_logger(self) -> KaijuLogger:
        logger = self.app.logger.logger.getChild(self.name)
        if self.loglevel is not None:
            logger.setLevel(self.loglevel.upper() if isinstance(self.loglevel, str) else self.loglevel)
        return KaijuLogger(logger)

    # -- declarations -----------------------------------------------------

    @classmethod
    def dependencies(cls) -> tuple[Dependency, ...]:
        """The dependencies declared by annotations typed with a Service subclass."""
        return _collect_dependencies(cls, cls._base_attrs)

    @classmethod
    def settings_fields(cls) -> dict[str, tuple[Any, Any]]:
        """Settings the class accepts: `{name: (type, default)}`; default is `inspect.Parameter.empty`
        when there is none.

        Collected from class annotations (not ClassVar, not private, not dependencies) and from
        the keyword parameters of `__init__` (for classes configured that way, like aiomisc's).
        """
        return _collect_fields(cls, cls._base_attrs)

    def check(self) -> None:
        """Reject settings that cannot work together, or with the rest of the app.

        The one hook for the rules an annotation cannot say: between settings of this
        service (a default above its maximum), or with other services (a method some
        service must expose, an address another server listens on; `self.app.services`
        holds them all, dependency attributes are set). The runtime calls it before any
        service starts, so `kaiju-run check` runs it too. Raise `SettingError(key,
        "expected ..., got ...")` naming the setting. Does nothing by default.
        """

    async def start(self) -> None:
        """Does nothing: a service that only exposes RPC methods needs no start of its own.

        Override it to open connections or start loops; the runtime awaits it once every
        service this one depends on has started.
        """

    async def stop(self, exception: Exception | None = None) -> None:
        """Does nothing: override it to close what `start()` opened."""

    # -- the service contract: what kaiju asks every service -------------------

    async def health(self) -> None:
        """Raise when the service cannot do its work now (the message says why): the check of
        `/health/ready` and `app.health`, run within a timeout. Default: healthy."""

    def metrics(self) -> Iterable[Any]:
        """The service's metrics at scrape time: prometheus-client metric families
        (`CounterMetricFamily`, `GaugeMetricFamily`, ...), yielded exactly like a custom
        collector's `collect()`. Families of one name from several services are merged.
        Default: none."""
        return ()

    def log_fields(self) -> Callable[[], dict[str, Any] | None] | None:
        """A provider of fields for every log record: a zero-argument callable returning the
        fields for the record being logged now (or None). Asked once, after the service
        started. Default: None (no provider)."""
        return None

    def forget_service(self, name: str) -> None:
        """The service `name` was left out of the app (an optional service that failed to
        start): drop what this service keeps about it. Default: nothing."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class SettingError(ValueError):
    """A setting that cannot work, raised by `Service.check`: `key` names it, the message says
    what was expected and what was given (`expected at most 600, got 900`).

    The runtime shows it as ``FILE: services[NAME].settings.KEY: MESSAGE``.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def listen_address(service: Any) -> tuple[str, Any] | None:
    """Where a server service listens, from its settings: ("unix", path) for `unix_socket`, (host, port)
    for `host` (or aiomisc's `address`) and a fixed `port`; None when it picks a free port or is no server."""
    path = getattr(service, "unix_socket", None)
    if isinstance(path, str) and path:
        return ("unix", path)
    port = getattr(service, "port", None)
    if not isinstance(port, int) or isinstance(port, bool) or port == 0:
        return None
    host = getattr(service, "host", None) or getattr(service, "address", None) or ""
    return (str(host), port)


_ANY_HOST = ("", "0.0.0.0", "::")  # listening on every interface clashes with any host on that port


def check_listen_address(service: Service) -> None:
    """Raise SettingError when another service of the app listens where `service` does.

    A server's `check()` calls it: two servers on one host and port (or one Unix socket)
    would fail only at start, the second one with "address in use".
    """
    mine = listen_address(service)
    if mine is None:
        return
    for name, other in service.app.services.items():
        theirs = listen_address(other) if other is not service else None
        if theirs is None or (theirs[0] == "unix" and mine[0] != "unix"):
            continue
        same_port = mine[0] != "unix" and theirs[1] == mine[1] and same_host(theirs[0], mine[0])
        if theirs == mine or same_port:
            key = "unix_socket" if mine[0] == "unix" else "port"
            shown = mine[1] if mine[0] == "unix" else f"{mine[0]}:{mine[1]}"
            raise SettingError(
                key, f'expected an address no other service listens on, got {shown} (also used by "{name}")'
            )


def same_host(a: str, b: str) -> bool:
    """Whether two listen hosts can clash: the same address, a wildcard, or `localhost` and one
    of its loopback addresses."""
    if {a, b} & set(_ANY_HOST):
        return True
    return bool(_LOCAL_NAMES.get(a, {a}) & _LOCAL_NAMES.get(b, {b}))


_LOCAL_NAMES = {"localhost": {"localhost", "127.0.0.1", "::1"}}


# -- declarations of any aiomisc service ------------------------------------------------

_AIOMISC_BASE_ATTRS = frozenset({"name", "loop"})  # set by kaiju or aiomisc on any service; never settings


def dependencies_of(cls: type[aiomisc.Service]) -> tuple[Dependency, ...]:
    """The dependencies of any aiomisc service class (annotations typed with a service class)."""
    if issubclass(cls, Service):
        return cls.dependencies()
    return _collect_dependencies(cls, _AIOMISC_BASE_ATTRS)


def settings_fields(cls: type[aiomisc.Service]) -> dict[str, tuple[Any, Any]]:
    """The settings of any aiomisc service class: see `Service.settings_fields`."""
    if issubclass(cls, Service):
        return cls.settings_fields()
    return _collect_fields(cls, _AIOMISC_BASE_ATTRS)


def _service_type(hint: Any) -> tuple[type[aiomisc.Service] | None, bool]:
    """(service class, optional) for an annotation naming an aiomisc Service subclass, else (None, False)."""
    if isinstance(hint, type):
        return (hint, False) if issubclass(hint, aiomisc.Service) else (None, False)
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and isinstance(rest[0], type) and issubclass(rest[0], aiomisc.Service):
            return rest[0], len(rest) < len(args)
    return None, False


def _collect_dependencies(cls: type, base_attrs: frozenset[str]) -> tuple[Dependency, ...]:
    cached = cls.__dict__.get("_kaiju_deps")
    if cached is None:
        found = []
        for attr, hint in class_hints(cls, aiomisc.Service).items():
            if attr.startswith("_") or attr in base_attrs:
                continue
            dep_cls, optional = _service_type(hint)
            if dep_cls is not None:
                found.append(Dependency(attr, dep_cls, optional))
        cached = tuple(found)
        type.__setattr__(cls, "_kaiju_deps", cached)
    return cached


def _collect_fields(cls: type, base_attrs: frozenset[str]) -> dict[str, tuple[Any, Any]]:
    cached = cls.__dict__.get("_kaiju_fields")
    if cached is not None:
        return cached
    deps = {d.attr for d in _collect_dependencies(cls, base_attrs)}
    fields: dict[str, tuple[Any, Any]] = {}
    for attr, hint in class_hints(cls, aiomisc.Service).items():
        if attr.startswith("_") or attr in base_attrs or attr in deps:
            continue
        if typing.get_origin(hint) is ClassVar or hint is ClassVar:
            continue
        default = inspect.Parameter.empty
        for klass in cls.__mro__:
            if attr in klass.__dict__:
                default = klass.__dict__[attr]
                break
        if isinstance(default, (property, types.FunctionType, classmethod, staticmethod)):
            continue
        fields[attr] = (hint, default)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass in (Service, aiomisc.Service, object):
            continue
        hints = function_hints(init)
        for param in inspect.signature(init).parameters.values():
            if param.name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if param.name in fields or param.name in base_attrs or param.name in deps:
                continue
            fields[param.name] = (hints.get(param.name, Any), param.default)
    type.__setattr__(cls, "_kaiju_fields", fields)
    return fields
