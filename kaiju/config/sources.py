"""Reading config sources: YAML files, env files (JSON or ``KEY=VALUE``), ``-e`` assignments.

Each reader returns plain data and raises `ConfigError` naming the file (and line) on
bad input.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from kaiju.config.errors import ConfigError, describe_value

__all__ = [
    "CONFIG_ENV",
    "ENV_FILE_ENV",
    "parse_env_assignment",
    "parse_env_text",
    "paths_from_env",
    "read_env_file",
    "read_yaml_file",
    "parse_yaml_text",
]

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class _Loader(yaml.SafeLoader):
    """A safe loader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<" merge keys may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {describe_value(key)} (first on line {seen[key] + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
            except TypeError:
                continue  # unhashable keys: the base class reports them
        return super().construct_mapping(node, deep=deep)


# libyaml's parser under the same constructor: ~10x faster on a valid file. Its error messages
# differ from PyYAML's, so a file it rejects is parsed again by _Loader for the error.
_FastLoader = type("_FastLoader", (yaml.CSafeLoader, _Loader), {}) if yaml.__with_libyaml__ else _Loader


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a file; raises `ConfigError` naming the file when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a file", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc), source=str(path)) from None


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file: a mapping at the top level (an empty file is ``{}``).

    Raises `ConfigError` for a missing or unreadable file, a syntax error (with its line)
    or a top level that is not a mapping.
    """
    return parse_yaml_text(read_text(path), str(path))


def parse_yaml_text(text: str, source: str) -> dict[str, Any]:
    """Parse YAML config text; errors name `source` and the line."""
    try:
        try:
            data = yaml.load(text, Loader=_FastLoader)
        except yaml.YAMLError:
            data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(exc.problem or exc.context or "invalid YAML", source=source, path=where) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {describe_value(data)}", source=source)
    return data


def read_env_file(path: str | Path) -> dict[str, Any]:
    """Read an env file: a JSON object (``.json``, or text starting with ``{``) or ``KEY=VALUE`` lines.

    Raises `ConfigError` naming the file (and line) for a missing file, bad JSON, a JSON
    value that is not an object, or a line that is not an assignment.
    """
    source = str(path)
    text = read_text(path)
    if Path(path).suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _parse_env_json(text, source)
    return parse_env_text(text, source)


def _parse_env_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(exc.msg, source=source, path=f"line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object, got {describe_value(data)}", source=source)
    return data


def parse_env_text(text: str, source: str = "<env>") -> dict[str, str]:
    """Parse ``.env`` text: ``KEY=VALUE`` lines, ``#`` comments, blank lines, optional ``export``.

    Values may be double-quoted (``\\n``, ``\\t``, ``\\"``, ``\\\\`` escapes), single-quoted
    (taken literally) or bare (trimmed; `` #`` starts a comment). Raises `ConfigError`
    naming `source` and the line for anything else.
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ConfigError("expected KEY=VALUE (KEY: letters, digits, _)", source=source, path=f"line {number}")
        key, value = match.groups()
        try:
            env[key] = _env_value(value)
        except ValueError as exc:
            raise ConfigError(str(exc), source=source, path=f"line {number}") from None
    return env


def _env_value(value: str) -> str:
    if value[:1] in ('"', "'"):
        quote = value[0]
        end = _closing_quote(value, quote)
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"unexpected text after the closing quote: {rest!r}")
        inner = value[1:end]
        if quote == "'":
            return inner
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), inner)
    comment = re.search(r"\s#", value)
    return (value[: comment.start()] if comment else value).strip()


def _closing_quote(value: str, quote: str) -> int:
    i = 1
    while i < len(value):
        if value[i] == "\\" and quote == '"':
            i += 2
            continue
        if value[i] == quote:
            return i
        i += 1
    raise ValueError(f"unterminated {quote} quote")


def parse_env_assignment(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` on the first ``=`` (the value may contain ``=``).

    Raises `ConfigError` when there is no ``=`` or the key is not a valid name.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"expected KEY=VALUE, got {describe_value(text)}", source="-e")
    if not ENV_KEY.match(key):
        raise ConfigError(
            f"expected KEY=VALUE with KEY made of letters, digits and _, got {describe_value(key)}", source="-e"
        )
    return key, value


CONFIG_ENV = "KAIJU_CONFIG"
"""The environment variable naming the config files when none are given (`:`-separated)."""
ENV_FILE_ENV = "KAIJU_ENV_FILE"
"""The environment variable naming the env files when none are given (`:`-separated)."""


def paths_from_env(name: str) -> list[str]:
    """The paths in environment variable `name` (separated by `os.pathsep`; empty parts skipped)."""
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p]
