"""Merging config layers, remembering which source set each key.

Mappings are deep-merged and lists replaced, except the top-level ``services`` list:
its entries are appended, and an entry whose identity (its ``name``, or lacking a name
its ``cls``) matches an earlier entry updates that entry (deep-merged). A top-level
section whose value is null adds nothing. Pure functions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from kaiju.config.errors import Path, PathError, describe_value

__all__ = ["Origins", "merge_layers", "normalize_services", "service_identity"]

# key path -> the source that set the value there (descendants inherit the nearest entry)
Origins = dict[Path, str]


def merge_layers(layers: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, Any], Origins]:
    """Merge `(source, data)` layers in order (later wins); return the data and its origins.

    The inputs are not modified. Raises `PathError` (with `source`) when ``services`` is
    not a list or one layer names the same service twice.
    """
    merged: dict[str, Any] = {}
    origins: Origins = {}
    for source, data in layers:
        origins.setdefault((), source)
        _merge_mapping(merged, data, (), source, origins)
    return merged, origins


def normalize_services(services: Any, source: str) -> list[Any]:
    """Turn bare class names into ``{"cls": name}`` and reject duplicate identities.

    Raises `PathError` when `services` is not a list, or two entries share an identity.
    """
    if not isinstance(services, list):
        raise PathError(("services",), f"expected a list, got {describe_value(services)}", source)
    seen: dict[str, int] = {}
    entries = []
    for index, entry in enumerate(services):
        if isinstance(entry, str):
            entry = {"cls": entry}
        identity = service_identity(entry)
        if identity is not None:
            if identity in seen:
                raise PathError(
                    ("services", index),
                    f'duplicate service name "{identity}" (also entry {seen[identity]} of this list); '
                    "give each service its own name",
                    source,
                )
            seen[identity] = index
        entries.append(entry)
    return entries


def service_identity(entry: Any) -> str | None:
    """The ``name`` of a services entry, else its ``cls``; None if it has neither."""
    if not isinstance(entry, Mapping):
        return None
    name = entry.get("name")
    if name == "":
        return None  # an empty name is no identity: validation says what is wrong with it
    for field in ("name", "cls"):
        value = entry.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def _merge_mapping(dst: dict[Any, Any], src: Mapping[Any, Any], path: Path, source: str, origins: Origins) -> None:
    for key, value in src.items():
        at = path + (key,)
        if not path and value is None:
            continue  # a top-level section left empty ("services:" with every entry commented out)
        if at == ("services",):
            _merge_services(dst, value, source, origins)
        elif isinstance(dst.get(key), dict) and isinstance(value, Mapping):
            _merge_mapping(dst[key], value, at, source, origins)
        else:
            _forget(origins, at)
            dst[key] = copy.deepcopy(value)
            origins[at] = source


def _merge_services(dst: dict[str, Any], value: Any, source: str, origins: Origins) -> None:
    entries = normalize_services(value, source)
    current = dst.setdefault("services", [])
    origins.setdefault(("services",), source)
    for entry in entries:
        identity = service_identity(entry)
        match = next(
            (i for i, old in enumerate(current) if identity is not None and service_identity(old) == identity),
            None,
        )
        if match is not None and isinstance(current[match], dict):
            _merge_mapping(current[match], entry, ("services", match), source, origins)
        else:
            current.append(copy.deepcopy(entry))
            origins[("services", len(current) - 1)] = source


def _forget(origins: Origins, prefix: Path) -> None:
    n = len(prefix)
    for path in [p for p in origins if len(p) > n and p[:n] == prefix]:
        del origins[path]
