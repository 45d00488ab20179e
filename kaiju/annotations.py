"""Reading annotations and msgspec's validation errors: one home for both.

Settings (`kaiju.runtime.service`), config files (`kaiju.config.settings`) and RPC params
(`kaiju.rpc.methods`) are all validated by msgspec from annotations; these helpers evaluate
those annotations and split msgspec's error text into a key path and a reason, the same way
for all three. Nothing here imports the rest of kaiju.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["class_hints", "function_hints", "join_path", "parse_path", "split_validation_error"]

Path = tuple[Any, ...]

# "<reason> - at `$.a[0]`", or "<reason> - at `key` in `$.a`" when a mapping key is at fault
_AT = re.compile(
    r"^(?P<reason>.*?)(?: - at `(?P<key>key)` in `(?P<keypath>\$[^`]*)`| - at `(?P<path>\$[^`]*)`)?$", re.S
)


def _evaluate(hint: Any, namespace: dict[str, Any]) -> Any:
    """`hint`, evaluated when it is a string; `Any` when it names something unknown."""
    for _ in range(2):  # a quoted annotation under `from __future__ import annotations` is a string twice
        if not isinstance(hint, str):
            return hint
        try:
            hint = eval(hint, namespace)
        except Exception:
            return Any
    return Any if isinstance(hint, str) else hint


def class_hints(cls: type, base: type = object) -> dict[str, Any]:
    """Annotations of `cls` and of its bases below `base` (a subclass wins), evaluated where possible.

    Each class's annotations are evaluated in its own module, so a name one of them cannot
    resolve becomes `Any` instead of failing the whole class (unlike `typing.get_type_hints`).
    """
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is base or not issubclass(klass, base):
            continue
        module = sys.modules.get(klass.__module__)
        namespace = {**vars(module)} if module else {}
        namespace.setdefault(klass.__name__, klass)
        for attr, hint in inspect.get_annotations(klass).items():
            hints[attr] = _evaluate(hint, namespace)
    return hints


def function_hints(func: Callable) -> dict[str, Any]:
    """Annotations of `func` (the return one under "return"), evaluated, `Annotated` constraints kept;
    unresolvable ones are `Any`."""
    try:
        return typing.get_type_hints(func, include_extras=True)  # keep Annotated[..., Meta(...)] constraints
    except Exception:  # one unresolvable forward reference: resolve the others one by one
        module = inspect.getmodule(func)
        namespace = {**vars(module)} if module else {}
        return {k: _evaluate(v, namespace) for k, v in getattr(func, "__annotations__", {}).items()}


def parse_path(text: str) -> Path:
    """msgspec's path text as a tuple: ``$.services[0].settings`` -> ``("services", 0, "settings")``."""
    path: list[Any] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[([^\]]*)\]", text.removeprefix("$")):
        if name:
            path.append(name)
        elif index.lstrip("-").isdigit():
            path.append(int(index))
        else:
            path.append(index.strip("'\""))
    return tuple(path)


def join_path(path: Path) -> str:
    """A path tuple written as msgspec does, without the ``$``: ``("a", 0, "b")`` -> ``a[0].b``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def split_validation_error(message: str) -> tuple[str, Path, bool]:
    """A msgspec ValidationError's text as (reason, path, whether a mapping key is at fault).

    >>> split_validation_error("Expected `int`, got `str` - at `$.port`")
    ('Expected `int`, got `str`', ('port',), False)
    """
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    if match.group("key"):
        return match.group("reason"), parse_path(match.group("keypath")), True
    return match.group("reason"), parse_path(match.group("path") or "$"), False
