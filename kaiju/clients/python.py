"""A typed Python client from an OpenRPC document: one module, passing `mypy --strict`.

Each schema of the document's components becomes a msgspec `Struct` (an object), a
`Literal` (an enum) or an alias; each service a class with a method per RPC method, typed
from its params and result, the params sent by name and the result converted with
`msgspec.convert`. The client calls through any object with an `async call(method, params)`
(`kaiju.http.HTTPRPCClient`, `kaiju.http.WSRPCClient`): the module needs msgspec only.
"""

from __future__ import annotations

import json
from typing import Any

from kaiju.clients.naming import doc_lines, groups, identifier, ref_name

__all__ = ["python_client"]

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_FORMATS = {
    "date-time": "datetime.datetime",
    "date": "datetime.date",
    "time": "datetime.time",
    "uuid": "uuid.UUID",
    "decimal": "decimal.Decimal",
    "duration": "datetime.timedelta",
}


def python_type(schema: dict[str, Any]) -> str:
    """The Python annotation for a JSON schema (as msgspec writes them); `Any` when unknown."""
    if "$ref" in schema:
        return ref_name(schema["$ref"])
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
    if "const" in schema:
        return f"Literal[{json.dumps(schema['const'])}]"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(dict.fromkeys(python_type(s) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(python_type({**schema, "type": k}) for k in kind)
    if kind == "string" and schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        if "prefixItems" in schema:
            items = [python_type(s) for s in schema["prefixItems"]]
            return f"tuple[{', '.join(items)}]" if items else "tuple[()]"
        return f"list[{python_type(schema.get('items', {}))}]"
    if kind == "object":
        return f"dict[str, {python_type(schema.get('additionalProperties') or {})}]"
    return "Any"


def _struct(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    fields = schema.get("properties", {})
    lines = [f"class {name}(msgspec.Struct, omit_defaults=True, kw_only=True):"]
    lines += _docstring([schema["description"]] if schema.get("description") else [], "    ")
    taken: set[str] = set()
    for field, sub in fields.items():
        attr = identifier(field, taken)
        taken.add(attr)
        rename = f'name="{field}"' if attr != field else ""
        annotation = python_type(sub)
        if field in required:
            value = f" = msgspec.field({rename})" if rename else ""
            lines.append(f"    {attr}: {annotation}{value}")
        else:
            default = f"default={_literal(sub['default'])}" if "default" in sub else "default=msgspec.UNSET"
            annotation = annotation if "default" in sub else f"{annotation} | msgspec.UnsetType"
            lines.append(f"    {attr}: {annotation} = msgspec.field({', '.join(filter(None, (default, rename)))})")
    if not fields:
        lines.append("    pass")
    return lines


def _literal(value: Any) -> str:
    """A schema default as Python source (JSON scalars; containers become factories)."""
    if isinstance(value, list | dict):
        return f"msgspec.convert({json.dumps(value)}, Any)"
    return repr(value)


def _component(name: str, schema: dict[str, Any]) -> list[str]:
    if schema.get("type") == "object" and "properties" in schema:
        return _struct(name, schema)
    return [f"{name} = {python_type(schema)}"]


def _docstring(lines: list[str], indent: str) -> list[str]:
    if not lines:
        return []
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}".rstrip() for line in lines[1:]), f'{indent}"""']


def _method(attr: str, m: dict[str, Any]) -> list[str]:
    args, sent = ["self"], []
    params = m.get("params", [])
    if params:
        args.append("*")
    taken = {"self"}
    for p in params:
        name = identifier(p["name"], taken)
        taken.add(name)
        annotation = python_type(p.get("schema", {}))
        if p.get("required"):
            args.append(f"{name}: {annotation}")
        else:
            args.append(f"{name}: {annotation} | msgspec.UnsetType = msgspec.UNSET")
        sent.append(f'"{p["name"]}": {name}')
    result = python_type(m.get("result", {}).get("schema", {}))
    lines = [f"    async def {attr}({', '.join(args)}) -> {result}:"]
    lines += _docstring(doc_lines(m), "        ")
    call = f'await self._transport.call("{m["name"]}", _params({{{", ".join(sent)}}}))'
    if result == "Any":
        lines.append(f"        return {call}")
    elif result == "None":
        lines.append(f"        {call}")
    else:
        lines.append(f"        return msgspec.convert({call}, {result})")
    return lines


_HEAD = '''"""A typed client of {title} {version}: made by `kaiju-run client` from its OpenRPC document.

    api = Client(transport)            # kaiju.http.HTTPRPCClient or WSRPCClient, started
    await api.<service>.<method>(...)

Do not edit: generate it again when the API changes.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, Literal, Protocol

import msgspec

__all__ = ["Client", "Transport"]


class Transport(Protocol):
    """What the client calls through: `kaiju.http.HTTPRPCClient`, `WSRPCClient`, or your own."""

    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any: ...


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {{k: msgspec.to_builtins(v) for k, v in params.items() if v is not msgspec.UNSET}}
'''


def python_client(document: dict[str, Any]) -> str:
    """The source of a typed client module for `document` (an OpenRPC document)."""
    info = document.get("info", {})
    out = [_HEAD.format(title=info.get("title", "the app"), version=info.get("version", ""))]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        out += ["", "", *_component(identifier(name), schema)]
    services = groups(document.get("methods", []))
    for service, methods in services.items():
        cls = "_" + identifier(service).title().replace("_", "")
        out += ["", "", f"class {cls}:", f'    """The methods of "{service}"."""', ""]
        out += ["    def __init__(self, transport: Transport) -> None:", "        self._transport = transport"]
        taken: set[str] = {"_transport"}
        for rest, m in methods:
            attr = identifier(rest, taken)
            taken.add(attr)
            out += ["", *_method(attr, m)]
    out += ["", "", "class Client:", '    """The whole API: an attribute per service."""', ""]
    out.append("    def __init__(self, transport: Transport) -> None:")
    out.append("        self.transport = transport")
    for service in services:
        cls = "_" + identifier(service).title().replace("_", "")
        out.append(f"        self.{identifier(service, {'transport'})} = {cls}(transport)")
    topics = document.get("x-topics") or []
    if topics:
        out += ["", "", "# event topics a client may subscribe to (WSRPCClient.subscribe), with the scope each needs"]
        out.append("TOPICS: dict[str, str] = " + json.dumps({t["pattern"]: t["scope"] for t in topics}))
    return "\n".join(out) + "\n"
