"""From settings to a start plan: service instances, their dependencies and start layers.

Everything that can be checked before a service starts is checked here, so
`kaiju-run check` and a real start reject a bad config in the same words: a module that
does not import, an unknown class, a constructor that raises, settings of the wrong type
or unknown, a duplicate name, a missing or ambiguous dependency, a cycle, and whatever
each service's `check()` hook rejects (settings that cannot work together or with the
other services). Services passed in from Python get the same checks.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomisc
import msgspec

from kaiju.config.errors import ConfigError
from kaiju.config.loader import LoadedConfig, load_config_data
from kaiju.config.settings import convert_with_texts, validation_problem
from kaiju.runtime.graph import CycleError, layers
from kaiju.runtime.registry import ClassNotFound, Registry, describe_error
from kaiju.runtime.service import App, Service, SettingError, dependencies_of, settings_fields
from kaiju.runtime.types import check_hook

__all__ = ["Plan", "ServiceSpec", "build_plan", "settings_type"]


@dataclass
class ServiceSpec:
    """One service of a plan: its instance and how to start it."""

    service: aiomisc.Service  # a kaiju Service, or any other aiomisc one
    name: str = ""  # "": the service's own `name`, else its class name
    required: bool = True
    start_timeout: float | None = None
    path: tuple = ()  # config key path of the entry, () for a service passed in from Python
    needs: dict[str, str] = field(default_factory=dict)  # attribute -> service name (None-valued deps left out)
    # the attributes of `needs` declared optional (`x: X | None`): the service can go on without them
    optional: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = getattr(self.service, "name", None) or type(self.service).__name__


@dataclass
class Plan:
    """The services of one app in start order."""

    app: App
    specs: dict[str, ServiceSpec]
    layers: list[list[str]]
    config: LoadedConfig

    def graph(self, *, hard: bool = False) -> dict[str, set[str]]:
        """`{service: names of the services it needs}`; with `hard`, only the dependencies it
        cannot go without (not those declared optional)."""
        if hard:
            return {
                name: {t for a, t in spec.needs.items() if a not in spec.optional} for name, spec in self.specs.items()
            }
        return _graph(self.specs)

    def describe(self) -> str:
        """Human-readable start layers, as `kaiju-run check` prints them."""
        lines = [f"{self.app.name} {self.app.version} (env {self.app.env}): {len(self.specs)} services"]
        for number, layer in enumerate(self.layers, 1):
            lines.append(f"layer {number}:")
            for name in layer:
                spec = self.specs[name]
                needs = ", ".join(sorted(set(spec.needs.values())))
                flags = "" if spec.required else " (optional)"
                cls = type(spec.service)
                lines.append(
                    f"  {name} [{cls.__module__}:{cls.__qualname__}]{flags}" + (f" <- {needs}" if needs else "")
                )
        return "\n".join(lines)


def _graph(specs: dict[str, ServiceSpec]) -> dict[str, set[str]]:
    return {name: set(spec.needs.values()) for name, spec in specs.items()}


# -- settings validation --------------------------------------------------------

_SETTINGS_TYPES: dict[type, type[msgspec.Struct]] = {}


def _supported(hint: Any) -> bool:
    try:
        msgspec.json.Decoder(hint)
    except Exception:
        return False
    return True


def settings_type(cls: type[aiomisc.Service]) -> type[msgspec.Struct]:
    """A Struct type checking the settings `cls` (any aiomisc service class) accepts, cached per class."""
    struct = _SETTINGS_TYPES.get(cls)
    if struct is None:
        fields: list[tuple] = []
        for name, (hint, _default) in settings_fields(cls).items():
            hint = hint if _supported(hint) else Any
            if name in cls.__required__:
                fields.append((name, hint))
            else:  # the class default stays in place when the setting is not given
                fields.append((name, typing.Union[hint, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007 -- any hint
        fields.sort(key=len)  # required (2-tuples) first, as Structs want
        struct = msgspec.defstruct(f"{cls.__name__}Settings", fields, forbid_unknown_fields=True)
        _SETTINGS_TYPES[cls] = struct
    return struct


def validate_settings(
    cls: type[aiomisc.Service], settings: dict[str, Any], texts: dict | None = None
) -> dict[str, Any]:
    """Check `settings` against what `cls` accepts; returns the converted keyword arguments.

    `texts` holds the template texts under the settings, so `password: "[PW]"` with
    `PW=123456` still reaches a `str` setting. Raises `msgspec.ValidationError`
    (`kaiju.config.settings.validation_problem` reads it).
    """
    converted = convert_with_texts(settings, settings_type(cls), texts or {}, check_hook)
    return {key: getattr(converted, key) for key in settings}


def _given_settings(service: aiomisc.Service) -> dict[str, Any]:
    """The settings a service built in Python holds as attributes (those it was given or set)."""
    fields = settings_fields(type(service))
    return {
        key: value for key, value in vars(service).items() if key in fields and not isinstance(value, aiomisc.Service)
    }


# -- building ---------------------------------------------------------------------


class _Builder:
    def __init__(self, config: LoadedConfig, registry: Registry, app: App):
        self.config = config
        self.registry = registry
        self.app = app
        self.specs: dict[str, ServiceSpec] = {}
        self.wanted: dict[str, dict[str, str]] = {}  # service -> {attr: name given in config}

    def error(self, path: tuple, message: str) -> ConfigError:
        return self.config.error(path, message)

    def setting_error(self, spec: ServiceSpec, key: tuple, message: str) -> ConfigError:
        """An error at `services[NAME].settings.KEY`, for a config entry or a service from Python."""
        if spec.path:
            return self.error((*spec.path, "settings", *key), message)
        where = self.config.format_path(("settings", *key)) if key else "settings"
        return ConfigError(message, source="<python>", path=f"services[{spec.name}].{where}")

    def add_entry(self, index: int, entry: Any) -> None:
        path = ("services", index)
        try:
            cls = self.registry.resolve(entry.cls)
        except ClassNotFound as exc:
            raise self.error((*path, "cls"), str(exc)) from None
        default_name = cls.default_name() if issubclass(cls, Service) else cls.__name__
        name = entry.name or default_name
        settings = dict(entry.settings)
        wanted: dict[str, str] = {}
        for dep in dependencies_of(cls):
            if dep.attr in settings:
                given = settings.pop(dep.attr)
                if given is not None and not isinstance(given, str):
                    raise self.error(
                        (*path, "settings", dep.attr), f"expected the name of a {dep.cls.__name__} service"
                    )
                if given is not None:
                    wanted[dep.attr] = given
        try:
            kwargs = validate_settings(cls, settings, self.config.texts_under((*path, "settings")))
        except msgspec.ValidationError as exc:
            sub, message = validation_problem(str(exc), settings, settings_type(cls))
            raise self.error((*path, "settings", *sub), message) from None
        missing = sorted(set(getattr(cls, "__required__", ())) - kwargs.keys())
        if missing:  # aiomisc checks these in its constructor, with a less readable message
            raise self.error((*path, "settings", missing[0]), "required key missing")
        service = self.construct(cls, name, entry, kwargs, path)
        self.add(ServiceSpec(service, name, entry.required, entry.start_timeout, path), wanted)

    def construct(
        self, cls: type[aiomisc.Service], name: str, entry: Any, kwargs: dict[str, Any], path: tuple
    ) -> aiomisc.Service:
        """An instance of `cls`; what its constructor raises becomes a one-line config error."""
        ref = f"{cls.__module__}:{cls.__qualname__}"
        try:
            if issubclass(cls, Service):
                return cls(name=name, app=self.app, loglevel=entry.loglevel, **kwargs)
            if "name" in inspect.signature(cls).parameters:  # aiomisc's PeriodicService names its callback so
                kwargs = {**kwargs, "name": name}
            service = cls(**kwargs)
        except SettingError as exc:  # the class refuses a setting by name (a dotted path into it)
            raise self.error((*path, "settings", *exc.key.split(".")), exc.message) from None
        except Exception as exc:  # the settings were valid: the class's own code failed
            raise self.error(path, f"{ref} failed to construct: {describe_error(exc)}") from None
        if getattr(service, "name", None) is None:
            service.name = name  # the runtime and its logs name every service
        return service

    def add_python(self, service: aiomisc.Service) -> None:
        """A service instance passed in from Python: bound to the app, its settings checked."""
        if isinstance(service, Service):
            service.bind(self.app)
        name = getattr(service, "name", None) or type(service).__name__
        spec = ServiceSpec(service, name)
        try:
            msgspec.convert(_given_settings(service), settings_type(type(service)), dec_hook=check_hook)
        except msgspec.ValidationError as exc:
            sub, message = validation_problem(str(exc), _given_settings(service), settings_type(type(service)))
            raise self.setting_error(spec, sub, message) from None
        if getattr(service, "name", None) is None:
            service.name = name
        self.add(spec, {})

    def add(self, spec: ServiceSpec, wanted: dict[str, str]) -> None:
        if spec.name in self.specs:
            other = self.specs[spec.name].path
            where = f" (also at {self.config.format_path(other)})" if other else ""
            raise self.error((*spec.path, "name") if spec.path else (), f'duplicate service name "{spec.name}"{where}')
        self.specs[spec.name] = spec
        self.wanted[spec.name] = wanted

    def resolve(self) -> None:
        """Point each dependency at one service: by the name given, else by type."""
        for name, spec in self.specs.items():
            service = spec.service
            for dep in dependencies_of(type(service)):
                given = self.wanted[name].get(dep.attr)
                path = (*spec.path, "settings", dep.attr) if spec.path else ()
                current = service.__dict__.get(dep.attr)
                if given is None and isinstance(current, aiomisc.Service):
                    given = self.name_of(current)  # an instance passed in from Python, already wired
                if given is not None:
                    target = self.specs.get(given)
                    if target is None:
                        raise self.error(path, f'{name} needs "{given}", but no service has that name')
                    if not isinstance(target.service, dep.cls):
                        raise self.error(
                            path, f'"{given}" is a {type(target.service).__name__}, not a {dep.cls.__name__}'
                        )
                else:
                    found = [s for n, s in self.specs.items() if n != name and isinstance(s.service, dep.cls)]
                    if not found:
                        if dep.optional:
                            setattr(service, dep.attr, None)
                            continue
                        could = self.registry.implementations(dep.cls)
                        hint = (
                            f": add one of {', '.join(could)}"
                            if len(could) > 1
                            else f": add a {could[0]}"
                            if could
                            else ""
                        )
                        raise self.error(
                            path, f"{name} needs a {dep.cls.__name__} service ({dep.attr}), and there is none{hint}"
                        )
                    if len(found) > 1:
                        names = ", ".join(sorted(s.name for s in found))
                        raise self.error(
                            path,
                            f"{name} needs one {dep.cls.__name__} ({dep.attr}) and there are several: {names}; "
                            f"name one in settings: {{{dep.attr}: NAME}}",
                        )
                    target = found[0]
                setattr(service, dep.attr, target.service)
                spec.needs[dep.attr] = target.name
                if dep.optional:
                    spec.optional.add(dep.attr)

    def check_required(self) -> None:
        """Refuse an optional service (`required: false`) that a required one needs: when it
        failed, the required one could not start either, so it is not optional at all."""
        for name, spec in self.specs.items():
            if not spec.required:
                continue
            for attr, target in spec.needs.items():
                if attr in spec.optional:
                    continue  # declared optional (`x: X | None`): it starts without it
                other = self.specs[target]
                if not other.required:
                    path = (*other.path, "required") if other.path else ()
                    raise self.error(
                        path,
                        f'expected true: the required service "{name}" needs "{target}" '
                        f'(or give "{name}" required: false too)',
                    )

    def name_of(self, service: aiomisc.Service) -> str | None:
        return next((n for n, s in self.specs.items() if s.service is service), getattr(service, "name", None))

    def check(self) -> None:
        """Run every service's `check()` hook, once all of them are built and wired."""
        for spec in self.specs.values():
            hook = getattr(spec.service, "check", None) if isinstance(spec.service, Service) else None
            if hook is None:
                continue
            try:
                hook()
            except SettingError as exc:
                raise self.setting_error(spec, tuple(exc.key.split(".")), exc.message) from None
            except ValueError as exc:
                raise self.setting_error(spec, (), f"{type(spec.service).__name__}: {exc}") from None


def build_plan(
    config: LoadedConfig | None = None,
    services: Sequence[aiomisc.Service] = (),
    *,
    registry: Registry | None = None,
) -> Plan:
    """Instantiate the enabled services of `config`, add `services` passed in, wire dependencies
    and order them in start layers. Raises ConfigError on anything wrong."""
    if config is None:
        config = load_config_data({"main": {"name": "app"}}, source="<python>", os_env=False)
    main = config.settings.main
    app = App(
        main.name,
        main.env,
        main.version,
        debug=main.debug,
        etc=dict(config.settings.etc),
        shutdown_timeout=main.shutdown_timeout,
    )
    app.managed = True
    if registry is None:
        registry = Registry()
        for index, package in enumerate(config.settings.packages):
            try:
                registry.add_package(package)
            except ClassNotFound as exc:
                raise config.error(("packages", index), str(exc)) from None
    builder = _Builder(config, registry, app)
    for index, entry in enumerate(config.settings.services):
        if entry.enabled:
            builder.add_entry(index, entry)
    for service in services:
        builder.add_python(service)
    builder.resolve()
    builder.check_required()
    app.services.update({name: spec.service for name, spec in builder.specs.items()})
    builder.check()
    try:
        order = layers(_graph(builder.specs))
    except CycleError as exc:
        first = builder.specs[exc.cycle[0]]
        raise config.error(first.path, str(exc)) from None
    return Plan(app, builder.specs, order, config)
