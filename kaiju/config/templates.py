"""Templates in config values: ``"[KEY]"`` and ``"[KEY:default]"``, filled from env values.

A value that is exactly one template takes the type its value has when read as a plain
YAML scalar (``"[PORT:8080]"`` gives 8080); a template inside a longer string is
interpolated as text. A default in quotes (``"[ENV:'dev']"``, as kaiju-tools configs write
them) is that text without the quotes, and stays a string (``"[CODE:'007']"`` gives
"007"). Pure functions, no I/O, no ``eval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from kaiju.config.errors import Path, PathError

__all__ = ["TEMPLATE", "fill_templates", "read_scalar", "template_keys", "texts_under"]

# The default runs to the first "]": it may contain ":" (URLs), never "]".
TEMPLATE = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)(?::([^\]]*))?\]")

_MISSING = object()
_SCALAR_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
}


def read_scalar(text: str) -> Any:
    """Type `text` as YAML types a plain scalar: int, float, bool or null, else the string.

    Only the scalar's own form is looked at: no comments, quotes, flow collections, tags or
    dates, so ``"p#ss"`` and ``"[a]"`` stay strings. An empty string stays an empty string.
    """
    if not text:
        return text
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        if tag not in _SCALAR_TAGS:
            return text
        return loader.construct_object(yaml.ScalarNode(tag, text))
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()


def template_keys(data: Any) -> set[str]:
    """Every template key used in the string values found anywhere in `data`."""
    keys: set[str] = set()
    for _path, text in _strings(data, ()):
        keys.update(match.group(1) for match in TEMPLATE.finditer(text))
    return keys


def fill_templates(data: Any, env: Mapping[str, Any], texts: dict[Path, str] | None = None) -> Any:
    """Return a copy of `data` with every template filled from `env`.

    `env` values that are strings are typed with `read_scalar` when they fill a whole
    value; other values (from JSON env files) are used as they are. When `texts` is
    given, it receives ``path -> text`` for every whole-template value typed as a number
    or a boolean, so a setting that wants a string can have the text back
    (`kaiju.config.settings.convert_with_texts`).

    Raises `PathError` (the path where the template stands) for a key with no value in
    `env` and no default.
    """
    return _fill(data, env, (), texts if texts is not None else {})


def _fill(node: Any, env: Mapping[str, Any], path: Path, texts: dict[Path, str]) -> Any:
    if isinstance(node, str):
        return _fill_string(node, env, path, texts)
    if isinstance(node, Mapping):
        return {key: _fill(value, env, path + (key,), texts) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, env, path + (i,), texts) for i, value in enumerate(node)]
    return node


def _fill_string(text: str, env: Mapping[str, Any], path: Path, texts: dict[Path, str]) -> Any:
    whole = TEMPLATE.fullmatch(text)
    if whole:
        value = _lookup(whole, env, path)
        if not isinstance(value, str) or (_quoted(whole.group(2)) and whole.group(1) not in env):
            return value
        typed = read_scalar(value)
        if isinstance(typed, (bool, int, float)):
            texts[path] = value
        return typed
    return TEMPLATE.sub(lambda match: _as_text(_lookup(match, env, path)), text)


def _lookup(match: re.Match[str], env: Mapping[str, Any], path: Path) -> Any:
    key, default = match.group(1), match.group(2)
    value = env.get(key, _MISSING)
    if value is not _MISSING:
        return value
    if default is not None:
        return default[1:-1] if _quoted(default) else default
    raise PathError(
        path,
        f'template key "{key}" has no value and no default '
        f"(give one with -e {key}=..., an env file or the environment, or write [{key}:default])",
    )


def _quoted(default: str | None) -> bool:
    """Whether a template default is written in quotes (`'dev'` or `"dev"`)."""
    return default is not None and len(default) >= 2 and default[0] == default[-1] and default[0] in "'\""


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # JSON env file values: render as they were written there
    return json.dumps(value, ensure_ascii=False)


def _strings(node: Any, path: Path):
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, path + (i,))


def texts_under(texts: Mapping[Path, str], prefix: Path) -> dict[Path, str]:
    """The entries of `texts` below `prefix`, with paths made relative to it."""
    n = len(prefix)
    return {path[n:]: text for path, text in texts.items() if path[:n] == tuple(prefix) and len(path) > n}
