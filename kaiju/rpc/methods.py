"""RPC methods: the `@method` decorator and the per-method binding built once from a signature.

Parameters are validated with msgspec against a Struct type made from the method's
annotations (unannotated means `Any`). By-name params (a JSON object) decode straight from
the request bytes into that Struct; by-position params (a JSON array) map onto the
parameters in order. Names starting with `_` are dropped from requests and are never
settable over RPC; unknown names are rejected unless the method takes `**kwargs`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Raw, UnsetType
from msgspec.structs import astuple

from kaiju.annotations import function_hints, join_path, split_validation_error
from kaiju.rpc.access import Scope, parse_scope
from kaiju.rpc.errors import InvalidParams, InvalidRequest, JSONParseError, RPCError
from kaiju.rpc.protocol import UNREADABLE as _UNREADABLE
from kaiju.rpc.protocol import not_json, why_unreadable

__all__ = ["Method", "MethodSpec", "WithExtra", "class_methods", "method", "method_spec"]

_MARK = "__kaiju_rpc__"
_generic_decoder = msgspec.json.Decoder()
_members_decoder = msgspec.json.Decoder(dict[str, Raw] | list[Raw])  # the top level of params, each value raw
_error_field = re.compile(r"field `(?P<name>[^`]+)`")


class MethodSpec(NamedTuple):
    """What `@method` records on a function: its RPC name (None: the function's), permission,
    and whether it is a kaiju-tools name served only in that compatibility mode."""

    name: str | None
    permission: Scope
    kaiju_tools: bool = False


def method(
    func: Callable | None = None,
    /,
    *,
    name: str | None = None,
    permission: Scope | int | str = Scope.SYSTEM,
    kaiju_tools: bool = False,
):
    """Mark an `async def` of a service as an RPC method named `<service name>.<name or function name>`.

    Usable bare (`@method`) or with options (`@method(name="get", permission=Scope.GUEST)`).
    The default permission is SYSTEM: nothing is public unless it says so. With
    `kaiju_tools=True` the method is an old name for clients not moved over yet: only an
    RPCServer with `kaiju_tools_requests: true` serves it.
    Raises TypeError for a function that is not `async def`, ValueError for an unknown scope.
    """
    spec = MethodSpec(name, parse_scope(permission), kaiju_tools)

    def mark(f: Callable) -> Callable:
        target = f.__func__ if isinstance(f, (classmethod, staticmethod)) else f
        if not inspect.iscoroutinefunction(target):
            raise TypeError(f"@rpc.method needs an async def, got {getattr(target, '__qualname__', target)!r}")
        setattr(target, _MARK, spec)
        return f

    return mark(func) if func is not None else mark


def method_spec(obj: Any) -> MethodSpec | None:
    """The MethodSpec of a function marked with `@method`, else None."""
    spec = getattr(obj, _MARK, None) if callable(obj) else None
    return spec if isinstance(spec, MethodSpec) else None


def class_methods(cls: type) -> list[tuple[str, MethodSpec]]:
    """`(attribute, spec)` of every RPC method of class `cls`. A method a subclass overrides
    without `@method` (a test double, say) keeps the spec of the one it overrides."""
    found = []
    for attr in dir(cls):
        for klass in cls.__mro__:
            raw = klass.__dict__.get(attr)
            if raw is None:
                continue
            spec = method_spec(raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw)
            if spec is not None:
                found.append((attr, spec))
                break
    return found


def _hints(func: Callable) -> dict[str, Any]:
    return function_hints(func)  # unresolvable forward references become Any: validate what can be


def _msgspec_type(hint: Any) -> Any:
    """`hint` when msgspec can decode it, else Any (so an exotic annotation never blocks a method)."""
    try:
        msgspec.json.Decoder(hint)
        return hint
    except Exception:
        return Any


def _invalid(exc: msgspec.ValidationError, fields: tuple[str, ...], positional: bool = False) -> InvalidParams:
    """InvalidParams naming the field and the reason, from a msgspec validation error."""
    reason, path, _ = split_validation_error(str(exc))
    field = join_path(path) or None
    if field is not None:
        if positional and isinstance(path[0], int) and path[0] < len(fields):
            field = join_path((fields[path[0]], *path[1:]))
    else:
        named = _error_field.search(reason)
        if named:
            field = named["name"]
    message = f"Invalid params: {field}: {reason}" if field else f"Invalid params: {reason}"
    return InvalidParams(message, data={"field": field, "reason": reason})


class WithExtra(NamedTuple):
    """Validated params of a `**kwargs` method plus the names its signature does not list."""

    params: Any
    extra: dict[str, Any]


class Method:
    """One RPC method: the bound function, its permission, and its params binding, built once."""

    __slots__ = (
        "name",
        "service",
        "func",
        "permission",
        "doc",
        "params",
        "returns",
        "fields",
        "field_set",
        "var_kwargs",
        "n_pos",
        "kw_names",
        "object_type",
        "array_type",
        "object_decoder",
        "_fast",
        "request_type",
        "plain",
    )

    def __init__(self, name: str, service: str, func: Callable[..., Coroutine], permission: Scope):
        self.name = name
        self.service = service
        self.func = func
        self.permission = permission
        self.doc = inspect.getdoc(func) or ""
        target = getattr(func, "__func__", func)
        hints = _hints(target)
        self.returns = _msgspec_type(hints.get("return", Any))
        signature = inspect.signature(func)
        struct_fields: list[tuple] = []
        self.params: list[inspect.Parameter] = []
        names: list[str] = []
        n_pos: int | None = None
        self.var_kwargs = False
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                self.var_kwargs = True
                continue
            if param.kind is param.VAR_POSITIONAL or param.name.startswith("_"):
                if param.kind is not param.VAR_POSITIONAL and param.default is param.empty:
                    raise TypeError(f"{name}: parameter {param.name} starts with '_' and so needs a default")
                if n_pos is None:
                    n_pos = len(names)
                continue
            if param.kind is param.KEYWORD_ONLY and n_pos is None:
                n_pos = len(names)
            hint = _msgspec_type(hints.get(param.name, Any))
            if param.default is param.empty:
                struct_fields.append((param.name, hint))
            elif isinstance(param.default, (list, dict, set)) and param.default:
                default = param.default
                struct_fields.append(
                    (param.name, hint, msgspec.field(default_factory=functools.partial(copy.deepcopy, default)))
                )
            else:
                struct_fields.append((param.name, hint, param.default))
            names.append(param.name)
            self.params.append(param.replace(annotation=hint))
        self.fields = tuple(names)
        self.field_set = frozenset(names)
        # fields past n_pos go by keyword (keyword-only, or after a hidden `_` parameter)
        self.n_pos = len(names) if n_pos is None else n_pos
        self.kw_names = None if self.n_pos == len(names) else names[self.n_pos :]
        base = f"{name.replace('.', '_')}_params"
        self.object_type = msgspec.defstruct(
            base, struct_fields, kw_only=True, forbid_unknown_fields=not self.var_kwargs
        )
        self.array_type = msgspec.defstruct(base + "_by_position", struct_fields, kw_only=True, array_like=True)
        self.object_decoder = msgspec.json.Decoder(self.object_type)
        self._fast = not self.var_kwargs
        # validated params are the positional arguments, in order: `func(*astuple(params))`
        self.plain = self._fast and self.kw_names is None
        # The whole request as one Struct, tagged by its method name: the server decodes a plain
        # request for any method in one pass through a tagged union of these. A notification
        # decodes with its id UNSET: the server runs it here only when its caller waits for it.
        self.request_type = None
        if self._fast:
            required = any(len(f) == 2 for f in struct_fields)
            params_field = (
                ("params", self.object_type)
                if required
                else ("params", self.object_type, msgspec.field(default_factory=self.object_type))
            )
            self.request_type = msgspec.defstruct(
                base.replace("_params", "_request"),
                [("jsonrpc", Literal["2.0"]), ("id", int | float | str | None | UnsetType, UNSET), params_field],
                tag_field="method",
                tag=name,
                kw_only=True,
            )

    def __repr__(self) -> str:
        return f"<Method {self.name} permission={self.permission.name}>"

    # -- binding: params -> validated params -> a coroutine of the method -----

    def validate(self, params: Any) -> Any:
        """The params checked against the signature, ready for `invoke`.

        `params` is raw JSON (`msgspec.Raw`, as read from a request body), a decoded object
        (dict by name, list or tuple by position), or None / UNSET for none. Raises
        InvalidParams naming the field, InvalidRequest for params that are neither.
        """
        if type(params) is Raw:
            if self._fast:
                try:
                    return self.object_decoder.decode(params)
                except msgspec.ValidationError:
                    pass  # by-position params, `_` names or a real error: the general path tells which
                except _UNREADABLE as exc:
                    raise self._unreadable(params, exc) from None
            try:
                params = _generic_decoder.decode(params)
            except _UNREADABLE as exc:
                raise self._unreadable(params, exc) from None
        if params is None or params is msgspec.UNSET:
            params = {}
        if type(params) is dict:
            if any(type(k) is str and k.startswith("_") for k in params):
                params = {k: v for k, v in params.items() if not k.startswith("_")}
            if self.var_kwargs:
                extra = {k: v for k, v in params.items() if k not in self.field_set}
                if extra:
                    return WithExtra(self._convert(params, extra), extra)
            return self._convert(params)
        if type(params) in (list, tuple):
            if len(params) > len(self.fields):
                raise InvalidParams(
                    f"Invalid params: expected at most {len(self.fields)} positional params, got {len(params)}",
                    data={"field": None, "reason": f"expected at most {len(self.fields)} positional params"},
                )
            try:
                return msgspec.convert(list(params), self.array_type)
            except msgspec.ValidationError as exc:
                raise _invalid(exc, self.fields, positional=True) from None
        raise InvalidRequest("params must be an object or an array", data={"field": "params"})

    def _convert(self, params: dict, extra: dict | None = None) -> Any:
        if extra:
            params = {k: v for k, v in params.items() if k in self.field_set}
        try:
            return msgspec.convert(params, self.object_type)
        except msgspec.ValidationError as exc:
            raise _invalid(exc, self.fields) from None
        except RecursionError:
            raise InvalidParams(
                "Invalid params: nested too deeply", data={"field": None, "reason": "nested too deeply"}
            ) from None

    def _unreadable(self, params: Raw, exc: BaseException) -> RPCError:
        """The error for raw params that do not decode: JSONParseError when they are not JSON at
        all (bad syntax, invalid UTF-8); InvalidParams for JSON the decoder cannot hold (too
        deep, a number out of range), naming the first field that does not decode when the
        params' top level does."""
        reason = why_unreadable(exc)
        if not_json(reason):
            return JSONParseError(f"Parse error: {reason}", data={"reason": reason})
        field = None
        try:
            members = _members_decoder.decode(params)
        except _UNREADABLE:
            members = None
        if type(members) is dict:
            items: Any = members.items()
        elif type(members) is list:
            items = ((self.fields[n] if n < len(self.fields) else str(n), raw) for n, raw in enumerate(members))
        else:
            items = ()
        for name, raw in items:
            try:
                _generic_decoder.decode(raw)
            except _UNREADABLE as bad:
                field, reason = name, why_unreadable(bad)
                break
        message = f"Invalid params: {field}: {reason}" if field else f"Invalid params: {reason}"
        return InvalidParams(message, data={"field": field, "reason": reason})

    def invoke(self, p: Any) -> Coroutine:
        """The method's coroutine for params returned by `validate` (callable again: retries)."""
        if self.kw_names is None and type(p) is not WithExtra:
            return self.func(*astuple(p))
        extra = None
        if type(p) is WithExtra:
            p, extra = p.params, p.extra
        values = astuple(p)
        n = self.n_pos
        kwargs = dict(zip(self.kw_names or (), values[n:], strict=True))
        if extra:
            kwargs.update(extra)
        return self.func(*values[:n], **kwargs)

    # -- description ------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Facts for listings: name, permission, params (name, type, required, default), returns, doc."""
        params = []
        for p in self.params:
            entry: dict[str, Any] = {"name": p.name, "type": _type_name(p.annotation), "required": p.default is p.empty}
            if p.default is not p.empty:
                entry["default"] = p.default
            params.append(entry)
        return {
            "name": self.name,
            "permission": self.permission.name.lower(),
            "params": params,
            "var_kwargs": self.var_kwargs,
            "returns": _type_name(self.returns),
            "doc": self.doc.split("\n\n", 1)[0],
        }

    def signature(self) -> dict[str, Any]:
        """Params and result as JSON Schemas: `{"params": {...}, "result": {...}, "doc": str}`."""
        return {
            "params": _schema(self.object_type),
            "result": _schema(self.returns),
            "doc": self.doc,
        }


def _schema(tp: Any) -> dict[str, Any]:
    try:
        schema = msgspec.json.schema(tp)
    except Exception:
        return {}
    defs = schema.pop("$defs", None)
    if "$ref" in schema and defs:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        resolved = dict(defs.pop(ref, {}))
        resolved.pop("title", None)
        if defs:
            resolved["$defs"] = defs
        return resolved
    if defs:
        schema["$defs"] = defs
    return schema


def _type_name(tp: Any) -> str:
    if tp is Any or tp is inspect.Parameter.empty:
        return "Any"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
