"""The typed shape of a project config (msgspec Structs) and readable validation errors."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec

from kaiju.annotations import parse_path, split_validation_error
from kaiju.config.errors import Path, PathError, describe_value
from kaiju.logging import LOG_LEVELS

__all__ = [
    "LOG_LEVELS",
    "LogHandlerSettings",
    "LoggingSettings",
    "MainSettings",
    "ProjectSettings",
    "ServiceSettings",
    "convert_settings",
    "convert_with_texts",
    "validation_problem",
]

_LOGLEVEL_PATTERN = "(?i)^(" + "|".join(LOG_LEVELS) + ")$"

LogLevel = Annotated[str, msgspec.Meta(pattern=_LOGLEVEL_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class MainSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The ``main`` section: who the process is and its process-wide defaults."""

    name: Name
    version: str = "0.0.0"
    env: Name = "dev"
    loglevel: LogLevel = "INFO"
    debug: bool = False
    shutdown_timeout: Seconds = 30.0
    start_timeout: Seconds = 30.0
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"  # KAIJU_LOOP, when set, wins

    def __post_init__(self) -> None:
        self.loglevel = self.loglevel.upper()


class ServiceSettings(msgspec.Struct, forbid_unknown_fields=True):
    """One ``services`` entry: which class, under which name, with which keyword arguments."""

    cls: Name
    name: Name | None = None
    enabled: bool = True
    required: bool = True
    loglevel: LogLevel | None = None
    start_timeout: Seconds | None = None
    settings: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if self.loglevel is not None:
            self.loglevel = self.loglevel.upper()


LogFormat = Literal["plain", "color", "json", "journald"]


class LogHandlerSettings(msgspec.Struct, forbid_unknown_fields=True):
    """One ``logging.handlers`` entry: where records go (stderr, a rotated file, the journal),
    in which format (default: the section's) and from which level (default: all)."""

    type: Literal["stderr", "file", "journald"] = "stderr"
    format: LogFormat | None = None
    level: LogLevel | None = None
    path: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 10 * 1024 * 1024
    backups: Annotated[int, msgspec.Meta(ge=0)] = 5

    def __post_init__(self) -> None:
        if self.level is not None:
            self.level = self.level.upper()
        if self.type == "file" and self.path is None:
            raise ValueError("a file handler needs a path")
        if self.type != "file" and self.path is not None:
            raise ValueError(f"path is for a file handler, not {self.type}")


class LoggingSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The ``logging`` section: the default format, levels of named loggers (third-party
    ones too, such as ``aiohttp.access``) and the handlers (default: one on stderr)."""

    format: LogFormat | None = None
    loggers: dict[Name, LogLevel] = {}
    handlers: list[LogHandlerSettings] = []

    def __post_init__(self) -> None:
        self.loggers = {name: level.upper() for name, level in self.loggers.items()}


class ProjectSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A whole config: ``main``, ``logging``, ``packages``, ``services``, the app's ``commands``
    and the free-form ``etc``."""

    main: MainSettings
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    packages: list[str] = []
    services: list[ServiceSettings] = []
    commands: list[Name] = []
    etc: dict[str, Any] = {}


def convert_settings(data: Any, texts: Mapping[Path, str] | None = None) -> ProjectSettings:
    """Validate config data (after templates) into `ProjectSettings`.

    `texts` are the template texts recorded by `fill_templates` (see `convert_with_texts`).
    Raises `PathError` with the key path and a message such as ``required key missing``,
    ``unknown key`` or ``expected int, got "abc"``.
    """
    try:
        return convert_with_texts(data, ProjectSettings, texts or {})
    except msgspec.ValidationError as exc:
        raise PathError(*validation_problem(str(exc), data)) from None


def convert_with_texts(
    data: Any, type_: Any, texts: Mapping[Path, str], dec_hook: Callable[[type, Any], Any] | None = None
) -> Any:
    """``msgspec.convert(data, type_, dec_hook=dec_hook)``, giving a template its text back where a
    string is wanted.

    A whole template such as ``"[PASSWORD]"`` with ``PASSWORD=123456`` fills in the int
    123456; where the setting expects a string, the value becomes ``"123456"`` again.
    `texts` maps paths (relative to `data`) to those texts. Raises `msgspec.ValidationError`.
    """
    for _ in range(len(texts) + 1):
        try:
            return msgspec.convert(data, type_, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            reason, path, _ = split_validation_error(str(exc))
            wanted = _EXPECTED.match(reason)
            if not wanted or path not in texts or "str" not in wanted.group("type").split(" | "):
                raise
            data = _replaced(data, path, texts[path])
            texts = {p: t for p, t in texts.items() if p != path}
    return msgspec.convert(data, type_, dec_hook=dec_hook)


def _replaced(node: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replaced(node[head], rest, value)}
    copied = list(node)
    copied[head] = _replaced(node[head], rest, value)
    return copied


# kaiju-tools config keys and where their settings live in kaiju (docs/migration.rst)
MOVED_KEYS: dict[Path, str] = {
    ("app",): "kaiju-tools' aiohttp Application parameters: debug is main.debug, the body size "
    "limit is the HTTPServer setting max_body_size",
    ("run",): "kaiju-tools' run_app() arguments: host, port and the like are settings of an HTTPServer service",
}

_BLACKLIST = "kaiju-tools' RPC blacklist: a method is SYSTEM-only unless its @rpc.method(permission=...) says so"
# kaiju-tools service settings and what takes their place (an unknown setting of that name says so)
MOVED_SETTINGS: dict[str, str] = {
    "blacklist_routes": _BLACKLIST,
    "blacklist_scope": _BLACKLIST,
    "max_timeout": "kaiju-tools' max_timeout: max_request_time on RPCServer, timeout on a task",
    "use_context": "kaiju-tools' use_context: nested calls always keep the caller's context",
}

_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_EXPECTED = re.compile(r"Expected `(?P<type>[^`]+)`(?P<rest>.*)", re.S)
_TYPE_NAMES = {"object": "mapping", "array": "list"}
_BAD_ENUM = re.compile(r"Invalid enum value (?P<value>.*)", re.S)


def validation_problem(message: str, data: Any, type_: Any = None) -> tuple[Path, str]:
    """Turn a msgspec validation message into `(key path, readable message)`; `type_` is the
    Struct type `data` was checked against (default: `ProjectSettings`), for the names an
    unknown key may have been meant as."""
    type_ = ProjectSettings if type_ is None else type_
    what, path, key_at_fault = split_validation_error(message)
    path = _named_keys(path, data, type_)
    if key_at_fault:
        return path, "keys must be strings"
    if found := _MISSING.match(what):
        return path + (found.group("field"),), "required key missing"
    if found := _UNKNOWN.match(what):
        key = path + (found.group("field"),)
        moved = MOVED_KEYS.get(key) if type_ is ProjectSettings else MOVED_SETTINGS.get(found.group("field"))
        if moved:
            return key, f"unknown key ({moved})"
        import difflib  # only an unknown key needs suggestions

        near = difflib.get_close_matches(found.group("field"), _field_names(_type_at(type_, path)), n=3)
        return key, f"unknown key (did you mean {' or '.join(near)}?)" if near else "unknown key"
    if (found := _BAD_ENUM.match(what)) and (choices := _literal_choices(type_, path)):
        return path, f"expected one of {', '.join(choices)}, got {describe_value(_lookup(data, path))}"
    return path, _expected(what, data, path)


def _named_keys(path: Path, data: Any, type_: Any) -> Path:
    """`path` with msgspec's `...` (a mapping's key it does not name) replaced by the key of the
    first entry that does not fit its type: `users.alice.permissions`, not `users["..."]`."""
    if "..." not in path:
        return path
    named: list[Any] = []
    for key in path:
        node = _lookup(data, tuple(named))
        if key == "..." and isinstance(node, dict):
            value_type = (typing.get_args(_type_at(type_, tuple(named))) or (Any, Any))[-1]
            key = next((k for k, v in node.items() if not _fits(v, value_type)), key)
        named.append(key)
    return tuple(named)


def _fits(value: Any, type_: Any) -> bool:
    try:
        msgspec.convert(value, type_)
    except Exception:  # a ValidationError, or a type the plain conversion cannot make: a suspect
        return False
    return True


def _type_at(type_: Any, path: Path) -> Any:
    """The type found at `path` inside the Struct `type_` (Any when the path leaves Structs)."""
    for key in path:
        type_ = _not_none(type_)
        if isinstance(key, int):
            type_ = (typing.get_args(type_) or (Any,))[0]
        elif isinstance(type_, type) and issubclass(type_, msgspec.Struct):
            type_ = typing.get_type_hints(type_, include_extras=True).get(key, Any)
        elif typing.get_origin(type_) is dict:
            type_ = (typing.get_args(type_) or (Any, Any))[-1]
        else:
            return Any
    return _not_none(type_)


def _field_names(type_: Any) -> list[str]:
    return list(type_.__struct_fields__) if isinstance(type_, type) and issubclass(type_, msgspec.Struct) else []


def _literal_choices(type_: Any, path: Path) -> tuple[str, ...]:
    """The values of the `Literal` type found at `path` inside the Struct `type_` (else empty)."""
    type_ = _type_at(type_, path)
    return typing.get_args(type_) if typing.get_origin(type_) is Literal else ()


def _not_none(type_: Any) -> Any:
    """`X` for `X | None` (or `X | UnsetType`, an optional setting), else `type_`."""
    if typing.get_origin(type_) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(type_) if a is not type(None) and a is not msgspec.UnsetType]
        return rest[0] if len(rest) == 1 else type_
    return type_


def _expected(what: str, data: Any, path: Path) -> str:
    found = _EXPECTED.match(what)
    if found is None:
        return what[:1].lower() + what[1:]
    expected = " or ".join(_TYPE_NAMES.get(part, part) for part in found.group("type").split(" | "))
    rest = found.group("rest")
    if "matching regex" in rest and _LOGLEVEL_PATTERN in rest:
        expected = "one of " + ", ".join(LOG_LEVELS)
    elif rest.strip() == "of length >= 1":
        expected = "a non-empty " + expected
    elif not rest.startswith(", got"):
        expected += rest
    return f"expected {expected}, got {describe_value(_lookup(data, path))}"


parse_msgspec_path = parse_path  # ``$.services[0].settings`` -> ``("services", 0, "settings")``


def _lookup(data: Any, path: Path) -> Any:
    node = data
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    return node
