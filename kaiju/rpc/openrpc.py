"""OpenRPC (spec.open-rpc.org, 1.2) documents built from method signatures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from kaiju.rpc.methods import Method

__all__ = ["OPENRPC_VERSION", "openrpc_document"]

OPENRPC_VERSION = "1.2.6"
_REF = "#/components/schemas/{name}"


def _one_by_one(types: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The schemas of `types` one at a time, `{}` (anything) for each msgspec cannot describe."""
    schemas, components = [], {}
    for kind in types:
        try:
            (schema,), found = msgspec.json.schema_components([kind], ref_template=_REF)
        except Exception:
            schema, found = {}, {}
        schemas.append(schema)
        components.update(found)
    return schemas, components


def openrpc_document(
    methods: Iterable[Method],
    *,
    title: str = "kaiju",
    version: str = "0.0.0",
    topics: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """An OpenRPC document for `methods`: params and result schemas from their annotations.

    Shared types (Structs, dataclasses, ...) go to `components.schemas` and are referenced
    as `#/components/schemas/<Name>`. `topics` (`{pattern, scope}` each: what the caller may
    subscribe to) become the extension `x-topics`: clients call `rpc.subscribe` with such a
    pattern, and each event arrives as a notification named after its topic.
    """
    methods = list(methods)
    types: list[Any] = []
    for m in methods:
        types.extend(p.annotation for p in m.params)
        types.append(m.returns)
    types = [Any if t is object else t for t in types]  # anything, which msgspec describes only as Any
    schemas: Sequence[dict[str, Any]]
    try:
        schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    except Exception:  # an annotation msgspec cannot describe: that one is anything
        schemas, components = _one_by_one(types)
    described = []
    index = 0
    for m in methods:
        params = []
        for p in m.params:
            schema = schemas[index]
            index += 1
            param: dict[str, Any] = {"name": p.name, "schema": schema, "required": p.default is p.empty}
            params.append(param)
        result = schemas[index]
        index += 1
        entry: dict[str, Any] = {
            "name": m.name,
            "params": params,
            "result": {"name": "result", "schema": result},
            "paramStructure": "by-name" if m.kw_names or m.var_kwargs else "either",
            "x-permission": m.permission.name.lower(),
        }
        if m.doc:
            summary, _, description = m.doc.partition("\n\n")
            entry["summary"] = summary.strip()
            if description.strip():
                entry["description"] = description.strip()
        described.append(entry)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": described,
        "components": {"schemas": components},
        "x-topics": [dict(t) for t in topics],
    }
