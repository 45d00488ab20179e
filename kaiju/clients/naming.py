"""What both client generators need: methods grouped by service, names made safe, docs."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["REF_PREFIX", "doc_lines", "groups", "identifier", "ref_name"]

REF_PREFIX = "#/components/schemas/"
_NOT_WORD = re.compile(r"\W")
# names a generated module defines itself, which a schema's title must not shadow
_TAKEN = frozenset({"Any", "Literal", "Protocol", "Transport", "Client", "msgspec", "datetime", "decimal", "uuid"})


def identifier(name: str, reserved: Iterable[str] = ()) -> str:
    """`name` as an identifier of Python and TypeScript: other characters become `_`, and a
    keyword, a leading digit or a reserved name get a trailing or leading `_`."""
    safe = _NOT_WORD.sub("_", name) or "_"
    if safe[0].isdigit():
        safe = "_" + safe
    if keyword.iskeyword(safe) or safe in _TAKEN or safe in reserved:
        safe += "_"
    return safe


def ref_name(ref: str) -> str:
    """The type name a `$ref` to the document's components names."""
    return identifier(ref.removeprefix(REF_PREFIX))


def groups(methods: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Methods by service (the name's first part), each with its name within the service
    (the rest, dots made `_`), sorted."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for m in sorted(methods, key=lambda m: m["name"]):
        service, _, rest = m["name"].partition(".")
        found.setdefault(service, []).append((rest or service, m))
    return found


def doc_lines(m: dict[str, Any]) -> list[str]:
    """A method's summary and description, as lines (empty when it has none)."""
    text = "\n\n".join(part for part in (m.get("summary"), m.get("description")) if part)
    return text.replace("*/", "* /").replace('"""', "'''").splitlines()
