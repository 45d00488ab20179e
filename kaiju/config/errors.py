"""The one error a bad config raises, and how key paths and values are shown in it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ConfigError", "PathError", "describe_value", "format_path"]

Path = tuple[Any, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class ConfigError(Exception):
    """A config that cannot be used: names the source file, the key path and what is wrong.

    ``str(error)`` is ``"{source}: {path}: {message}"``, empty parts left out, e.g.
    ``conf/app.yml: services[http].settings.port: expected int, got "abc"``.
    """

    def __init__(self, message: str, *, source: str = "", path: str = "") -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.path, self.message) if part)

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments need help to survive pickling (multiprocessing, logging)
        return _rebuild, (self.message, self.source, self.path)


def _rebuild(message: str, source: str, path: str) -> ConfigError:
    return ConfigError(message, source=source, path=path)


class PathError(Exception):
    """Raised by the pure config functions; the loader turns it into a `ConfigError`.

    `path` is a tuple of keys and list indices into the config data; `source` is set
    when the raising function knows which file is at fault.
    """

    def __init__(self, path: Path, message: str, source: str | None = None) -> None:
        self.path = tuple(path)
        self.message = message
        self.source = source
        super().__init__(f"{self.path}: {message}")


def format_path(path: Sequence[Any], data: Any = None) -> str:
    """Show a key path as a person reads it: ``services[http].settings.port``.

    An element of the top-level ``services`` list is shown by its ``name``, else its
    ``cls``, else its index (looked up in `data`); other list elements as ``[3]``.
    """
    out = ""
    node = data
    for depth, key in enumerate(path):
        if isinstance(key, int) and not isinstance(key, bool):
            label = str(key)
            if depth == 1 and path[0] == "services":
                label = service_label(node, key)
            out += f"[{label}]"
        elif isinstance(key, str) and _PLAIN_KEY.match(key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(key) if isinstance(key, str) else key}]"
        node = _child(node, key)
    return out


def service_label(services: Any, index: int) -> str:
    """The name, else the class, else the index of ``services[index]`` in `services`."""
    entry = _child(services, index)
    if isinstance(entry, str) and entry:
        return entry
    if isinstance(entry, Mapping):
        for field in ("name", "cls"):
            value = entry.get(field)
            if isinstance(value, str) and value:
                return value
    return str(index)


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
        return node[key]
    return None


def describe_value(value: Any) -> str:
    """A short, unambiguous rendering of a config value for an error message."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
