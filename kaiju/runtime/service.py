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
from typing import Any, ClassVar, NamedTuple

import aiomisc

from kaiju.logging import KaijuLogger

__all__ = ["App", "Dependency", "Namespace", "Service"]


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
    set it. One `App` exists per entrypoint; nothing here is global.
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
        self.services: dict[str, Service] = {}
        self.logger = KaijuLogger(logging.getLogger(name))
        # set by the entrypoint once every layer has started; transports that open early
        # (HTTP, streams) hold requests until then -- when a kaiju entrypoint manages the app
        self.started = asyncio.Event()
        self.managed = False
        self.stopping = False  # set by the entrypoint before the first service stops: readiness turns 503 first

    def __repr__(self) -> str:
        return f"App(name={self.name!r}, env={self.env!r})"


class Dependency(NamedTuple):
    """A dependency declared by a class annotation: `attr: ServiceClass`."""

    attr: str
    cls: type[Service]
    optional: bool


def _service_type(hint: Any) -> tuple[type[Service] | None, bool]:
    """(service class, optional) for an annotation naming a Service subclass, else (None, False)."""
    if isinstance(hint, type):
        return (hint, False) if issubclass(hint, Service) else (None, False)
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and isinstance(rest[0], type) and issubclass(rest[0], Service):
            return rest[0], len(rest) < len(args)
    return None, False


def _class_hints(cls: type) -> dict[str, Any]:
    """Annotations of `cls` and its bases (subclass wins), evaluated where possible."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, aiomisc.Service) or not issubclass(klass, aiomisc.Service):
            continue
        raw = klass.__dict__.get("__annotations__", {})
        module = inspect.getmodule(klass)
        namespace = {**vars(module)} if module else {}
        namespace.setdefault(klass.__name__, klass)
        for attr, hint in raw.items():
            if isinstance(hint, str):
                try:
                    hint = eval(hint, namespace)  # noqa: S307 -- evaluating a class's own annotation
                except Exception:
                    hint = Any
            hints[attr] = hint
    return hints


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
    _base_attrs: ClassVar[frozenset[str]] = frozenset({"name", "app", "logger", "loglevel", "loop", "service_name", "transport"})

    name: str
    app: App
    logger: KaijuLogger

    def __init__(self, *, name: str | None = None, app: App | None = None, loglevel: str | int | None = None, **kwargs: Any):
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
        cached = cls.__dict__.get("_kaiju_deps")
        if cached is None:
            found = []
            for attr, hint in _class_hints(cls).items():
                if attr.startswith("_") or attr in cls._base_attrs:
                    continue
                dep_cls, optional = _service_type(hint)
                if dep_cls is not None:
                    found.append(Dependency(attr, dep_cls, optional))
            cached = tuple(found)
            type.__setattr__(cls, "_kaiju_deps", cached)
        return cached

    def check_dependencies(self) -> None:
        """Reject settings that cannot work with the dependencies the runtime found.

        Called once every dependency attribute is set, before any service starts (so
        `kaiju-run check` reports it too). Does nothing by default; a subclass raises
        ValueError naming the setting, e.g. when a setting needs an optional dependency that
        is missing.
        """

    @classmethod
    def settings_fields(cls) -> dict[str, tuple[Any, Any]]:
        """Settings the class accepts: `{name: (type, default)}`; default is `inspect.Parameter.empty`
        when there is none.

        Collected from class annotations (not ClassVar, not private, not dependencies) and from
        the keyword parameters of `__init__` (for classes configured that way, like aiomisc's).
        """
        cached = cls.__dict__.get("_kaiju_fields")
        if cached is not None:
            return cached
        deps = {d.attr for d in cls.dependencies()}
        fields: dict[str, tuple[Any, Any]] = {}
        for attr, hint in _class_hints(cls).items():
            if attr.startswith("_") or attr in cls._base_attrs or attr in deps:
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
            for param in inspect.signature(init).parameters.values():
                if param.name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    continue
                if param.name in fields or param.name in cls._base_attrs or param.name in deps:
                    continue
                hint = param.annotation if param.annotation is not param.empty else Any
                if isinstance(hint, str):
                    hint = Any
                fields[param.name] = (hint, param.default)
        type.__setattr__(cls, "_kaiju_fields", fields)
        return fields

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
