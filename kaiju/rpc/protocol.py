"""JSON-RPC 2.0 on the wire: messages, the kaiju request headers, batch templates.

`read_request` turns one request (JSON bytes, or an object already decoded) into a
request whose `params` the method validates itself: raw JSON straight from the body
(`RawRequest`) or the decoded value (`Request`); anything that is not a request raises
InvalidRequest saying exactly what is wrong; a body that cannot be decoded at all (not
JSON, invalid UTF-8, nested too deeply, a number out of range) raises the error a client
is owed (`unreadable`), with the request's id when it can still be read. Responses are Structs encoded by one shared
encoder. The header names the dispatcher reads live here and nowhere else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

from kaiju.rpc.errors import InvalidParams, InvalidRequest, JSONParseError, RPCError

__all__ = [
    "parse_error",
    "ABORT_ON_ERROR",
    "AUTHORIZATION",
    "CORRELATION_ID",
    "DEADLINE",
    "RETRIES",
    "SESSION_ID",
    "TIMEOUT",
    "USE_TEMPLATE",
    "KAIJU_HEADERS",
    "NO_HEADERS",
    "ErrorResponse",
    "PlainHeaders",
    "RawRequest",
    "Request",
    "RequestHeaders",
    "Response",
    "UNREADABLE",
    "fill_template",
    "not_json",
    "parse_headers",
    "plain_headers",
    "plain_only",
    "parse_request",
    "read_kaiju_tools_request",
    "read_request",
    "unreadable",
]

# What decoding client JSON may raise besides a clean result: msgspec's errors, invalid
# UTF-8 in a string (UnicodeDecodeError, a ValueError), nesting deeper than the interpreter's
# recursion limit (RecursionError), a number out of range (msgspec.ValidationError).
UNREADABLE = (msgspec.MsgspecError, ValueError, RecursionError)  # msgspec's errors are ValueErrors only from 0.19

JSONRPC = "2.0"

CORRELATION_ID = "Correlation-Id"
TIMEOUT = "Timeout"
DEADLINE = "Deadline"
RETRIES = "RPC-Retries"
ABORT_ON_ERROR = "RPC-Batch-Abort-Error"
USE_TEMPLATE = "RPC-Batch-Template"
SESSION_ID = "Session-Id"
AUTHORIZATION = "Authorization"

RequestId = int | float | str | None


class RawRequest(msgspec.Struct):
    """A well-formed request as decoded from bytes; `params` stays raw JSON."""

    jsonrpc: Literal["2.0"]
    method: str
    id: RequestId | UnsetType = UNSET
    params: Raw | UnsetType = UNSET


class Request(msgspec.Struct):
    """A well-formed request with params already decoded (dict, list, or UNSET)."""

    method: str
    id: RequestId | UnsetType = UNSET
    params: Any = UNSET


class Response(msgspec.Struct, tag_field="jsonrpc", tag=JSONRPC, gc=False):
    """A result: `{"jsonrpc": "2.0", "id": ..., "result": ...}` (the tag is written first).

    Positional fields and no GC tracking: made and encoded once per request, never in a cycle.
    """

    id: Any
    result: Any


class ErrorResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = JSONRPC
    id: Any
    error: dict[str, Any]


def parse_request(obj: Any) -> Request:
    """Check one decoded request object; raises InvalidRequest (carrying `id` when one is readable)."""
    if type(obj) is not dict:
        raise InvalidRequest("Invalid request: expected an object")
    req_id = obj.get("id", UNSET)
    if req_id is not UNSET and req_id is not None and type(req_id) not in (int, float, str):
        exc = InvalidRequest("Invalid request: id must be a string, a number or null", data={"field": "id"})
        raise exc
    usable_id = None if req_id is UNSET else req_id
    if obj.get("jsonrpc") != JSONRPC:
        # kaiju-tools' clients send no "jsonrpc" member: say how a server accepts them
        hint = (
            ""
            if "jsonrpc" in obj
            else " (it is missing: a kaiju-tools client? RPCServer accepts those with kaiju_tools_requests: true)"
        )
        raise _with_id(
            InvalidRequest(f'Invalid request: "jsonrpc" must be "2.0"{hint}', data={"field": "jsonrpc"}), usable_id
        )
    method = obj.get("method")
    if type(method) is not str:
        raise _with_id(
            InvalidRequest('Invalid request: "method" must be a string', data={"field": "method"}), usable_id
        )
    params = obj.get("params", UNSET)
    if params is not UNSET and params is not None and type(params) not in (dict, list):
        raise _with_id(
            InvalidRequest('Invalid request: "params" must be an object or an array', data={"field": "params"}),
            usable_id,
        )
    return Request(method=method, id=req_id, params=params)


_decode_raw_request = msgspec.json.Decoder(RawRequest).decode
_decode_any = msgspec.json.Decoder().decode
_CONTAINER_START = frozenset(b"{[n")  # params: an object, an array or null


def read_request(item: Any) -> RawRequest | Request:
    """One request of a body or a batch: JSON (bytes-like or `msgspec.Raw`) or a decoded object.

    Raises InvalidRequest (carrying `request_id` when an id is readable) for anything that
    is not a request, and what `unreadable` says for a body that does not decode.
    """
    if type(item) is dict:
        return parse_request(item)
    if isinstance(item, (bytes, bytearray, memoryview, Raw)):
        try:
            req = _decode_raw_request(item)
        except msgspec.ValidationError:
            try:
                decoded = _decode_any(item)
            except UNREADABLE as exc:
                raise unreadable(item, exc) from None
            return parse_request(decoded)  # says what is wrong with it
        except UNREADABLE as exc:
            raise unreadable(item, exc) from None
        if req.params is not UNSET and bytes(req.params)[:1] and bytes(req.params)[0] not in _CONTAINER_START:
            refused = InvalidRequest(
                'Invalid request: "params" must be an object or an array', data={"field": "params"}
            )
            raise _with_id(refused, None if req.id is UNSET else req.id)
        if req.id is UNSET:
            # a notification gets no answer: make sure it is JSON, members the decoder skipped
            # and the params included; what is not JSON is a parse error, answered with id null
            unparsed = parse_error(item)
            if unparsed is not None:
                raise _with_id(unparsed, None)
        return req
    return parse_request(item)


def read_kaiju_tools_request(item: Any) -> RawRequest | Request:
    """`read_request`, also accepting kaiju-tools' requests: an object without a `"jsonrpc"`
    member is read as a JSON-RPC 2.0 request, and without an `"id"` it is answered with id
    null (kaiju-tools answered every request; a notification needs `"jsonrpc": "2.0"`)."""
    try:
        return read_request(item)
    except InvalidRequest as exc:
        if exc.data.get("field") != "jsonrpc":
            raise
        obj = item if type(item) is dict else _decode_any(item)  # it decoded a moment ago
        if type(obj) is not dict or "jsonrpc" in obj:
            raise
        return parse_request({**obj, "jsonrpc": JSONRPC, "id": obj.get("id")})


def _with_id(exc: RPCError, req_id: Any) -> RPCError:
    exc.request_id = req_id  # type: ignore[attr-defined]
    return exc


def why_unreadable(exc: BaseException) -> str:
    """What is wrong with JSON a decoder refused with `exc`, in a few words for a client."""
    if isinstance(exc, UnicodeDecodeError):
        return "invalid UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    if "out of range" in text or "exceeds the limit" in text.lower():
        return "number out of range"
    return text.split(" - at `", 1)[0] or type(exc).__name__


# A JSON string (an unterminated one runs to the end: no rescanning, linear time) or a bracket.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+\\?(?:"|\Z)|[\[\]{}]', re.S)
_ID_VALUE = re.compile(rb'\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]{0,40}|null)\s*[,}]', re.S)
_COLON = re.compile(rb"\s*:\s*")
_OPENING = frozenset(b"[{")


def _scan(body: bytes) -> tuple[Any, tuple[int, int] | None]:
    """For a request object that does not decode as a whole: its id when the top level holds a
    valid one (else None), and where its "params" value lies when that is an object or an
    array. A scan of string and bracket tokens, without recursion."""
    depth = 0
    req_id = params_start = params = None
    for token in _TOKEN.finditer(body):
        start, end = token.span()
        first = body[start]
        if first == 0x22:  # a string; directly inside the outermost object, maybe a key
            if depth != 1:
                continue
            key = body[start:end]
            if key == b'"id"' and req_id is None:
                value = _ID_VALUE.match(body, end)
                try:
                    found = _decode_any(value[1]) if value is not None else None
                except UNREADABLE:
                    found = None
                req_id = found if type(found) in (int, float, str) else None
            elif key == b'"params"' and params_start is None:
                colon = _COLON.match(body, end)
                if colon is not None and body[colon.end() : colon.end() + 1] in (b"{", b"["):
                    params_start = colon.end()
        elif first in _OPENING:
            depth += 1
        else:
            depth -= 1
            if depth == 1 and params_start is not None and params is None:
                params = (params_start, end)
    return req_id, params


# What a decoder may refuse in JSON that parses: values it cannot hold. Anything else it
# refuses (bad syntax, invalid UTF-8, a control character in a string) is not JSON at all.
_VALUE_REASONS = frozenset({"number out of range", "nested too deeply"})


def not_json(reason: str) -> bool:
    """Whether `why_unreadable`'s `reason` says the text is not JSON (a parse error), rather
    than JSON holding a value the decoder refuses (a number out of range, deep nesting)."""
    return reason not in _VALUE_REASONS


def parse_error(raw: Any) -> RPCError | None:
    """The parse error for raw JSON (bytes-like or `msgspec.Raw`) that is not JSON at all; None
    when it is JSON (even JSON holding values the decoder refuses). `read_request` checks a
    notification with it, so that a body that does not parse is answered -32700, never taken
    for a notification."""
    try:
        _decode_any(raw)
    except UNREADABLE as exc:
        reason = why_unreadable(exc)
        if not_json(reason):
            return JSONParseError(f"Parse error: {reason}", data={"reason": reason})
    return None


def unreadable(body: Any, exc: BaseException) -> RPCError:
    """The error for a request (or batch) body a decoder refused with `exc`, carrying the
    request's id in `request_id` when it can still be read:

    - InvalidParams when only the params are at fault and are JSON (a number out of range,
      deep nesting): the request without them decodes (`request_id` is UNSET for a
      notification: no answer);
    - else JSONParseError saying what is wrong, with the id the scan finds (null without one):
      a body that is not JSON is always answered, never taken for a notification.
    """
    raw = bytes(body) if isinstance(body, (bytes, bytearray, memoryview, Raw)) else b""
    reason = why_unreadable(exc)
    if raw.lstrip()[:1] != b"{":
        return _with_id(JSONParseError(f"Parse error: {reason}", data={"reason": reason}), None)
    req_id, params = _scan(raw)
    if params is not None and not not_json(reason):
        try:
            req = _decode_raw_request(raw[: params[0]] + b"null" + raw[params[1] :])
        except (*UNREADABLE, msgspec.DecodeError):
            pass
        else:
            error = InvalidParams(f"Invalid params: {reason}", data={"field": None, "reason": reason})
            return _with_id(error, req.id)  # UNSET: a notification, answered with nothing
    return _with_id(JSONParseError(f"Parse error: {reason}", data={"reason": reason}), req_id)


class RequestHeaders:
    """The request headers the dispatcher reads, parsed; `None` where not given."""

    __slots__ = (
        "correlation_id",
        "timeout",
        "deadline",
        "retries",
        "abort_on_error",
        "use_template",
        "session_id",
        "authorization",
    )

    def __init__(self) -> None:
        self.correlation_id: str | None = None
        self.timeout: float | None = None
        self.deadline: float | None = None
        self.retries = 0
        self.abort_on_error = False
        self.use_template = False
        self.session_id: str | None = None
        self.authorization: str | None = None


NO_HEADERS = RequestHeaders()  # read-only: what no kaiju header means

_KEYS = {
    "correlation-id": "correlation_id",
    "timeout": "timeout",
    "deadline": "deadline",
    "rpc-retries": "retries",
    "rpc-batch-abort-error": "abort_on_error",
    "rpc-batch-template": "use_template",
    "session-id": "session_id",
    "authorization": "authorization",
}
_NAMES = {
    "correlation-id": CORRELATION_ID,
    "timeout": TIMEOUT,
    "deadline": DEADLINE,
    "rpc-retries": RETRIES,
    "rpc-batch-abort-error": ABORT_ON_ERROR,
    "rpc-batch-template": USE_TEMPLATE,
    "session-id": SESSION_ID,
    "authorization": AUTHORIZATION,
}
KAIJU_HEADERS = frozenset(_KEYS)  # the header names the dispatcher reads, lower case


class PlainHeaders(dict[str, str]):
    """Headers without any name the dispatcher reads, checked once (`plain_only`) for the many
    requests that share them (a WebSocket's, its upgrade request's): `RPCServer.handle` does not
    look through them again for each request. Made, they are not to be changed."""


def plain_only(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers`: a `PlainHeaders` when none of their names is in `KAIJU_HEADERS`."""
    copy = dict(headers)
    return PlainHeaders(copy) if KAIJU_HEADERS.isdisjoint(map(str.lower, copy)) else copy


_TRUE = frozenset({"?1", "1", "true", "yes", "on"})
_FALSE = frozenset({"?0", "0", "false", "no", "off", ""})
_CORRELATION_ID = re.compile(r"[\x21-\x7e]{1,128}")
_NUMBER = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")  # ASCII digits only: no "1_0", "1e309", "nan", "²"
_WHOLE = re.compile(r"[0-9]{1,6}")


def _refuse(name: str, what: str, value: str) -> InvalidRequest:
    shown = value if len(value) <= 40 else value[:40] + "..."
    return InvalidRequest(f"Invalid request: header {name} must be {what}, got {shown!r}", data={"header": name})


def _number(name: str, value: str) -> float:
    number = float(value) if _NUMBER.fullmatch(value) else 0.0
    if not 0 < number < math.inf:
        raise _refuse(name, "a positive number", value)
    return number


def parse_headers(headers: Mapping[str, str], max_retries: int = 10) -> RequestHeaders:
    """Read the kaiju request headers (names in any case); raises InvalidRequest for a malformed
    value, naming the header in `data.header`. Numbers are plain ASCII decimals.

    Returns the shared `NO_HEADERS` when none of them is given.
    """
    parsed = NO_HEADERS
    for key, value in headers.items():
        lower = key.lower()
        attr = _KEYS.get(lower)
        if attr is None:
            continue
        if parsed is NO_HEADERS:
            parsed = RequestHeaders()
        name = _NAMES[lower]
        value = (value if type(value) is str else str(value)).strip()  # in-process callers may pass numbers
        if attr == "correlation_id":
            if not _CORRELATION_ID.fullmatch(value):
                raise _refuse(name, "1-128 visible ASCII characters", value)
            parsed.correlation_id = value
        elif attr == "timeout":
            parsed.timeout = _number(name, value)
        elif attr == "deadline":
            parsed.deadline = _number(name, value)
        elif attr == "retries":
            if not _WHOLE.fullmatch(value):
                raise _refuse(name, "a whole number", value)
            parsed.retries = min(int(value), max_retries)
        elif attr in ("abort_on_error", "use_template"):
            flag = value.lower()
            if flag not in _TRUE and flag not in _FALSE:
                raise _refuse(name, "?1 or ?0", value)
            setattr(parsed, attr, flag in _TRUE)
        else:
            setattr(parsed, attr, value or None)
    return parsed


def plain_headers(headers: Mapping[str, str]) -> tuple[bool, str | None, str | None, str | None]:
    """Whether `headers` leave a request on the plain path: no kaiju header but a well-formed
    Correlation-Id and the caller's credentials (a Session-Id, or an Authorization); and those
    three values (None when absent). Transports such as stream listeners pass a
    Correlation-Id with every request, logged-in clients their credentials: reading them here
    is all that `parse_headers` would have done."""
    cid = session_id = authorization = None
    for key, value in headers.items():
        lower = key.lower()
        if lower not in _KEYS:
            continue
        if type(value) is not str:
            return _NOT_PLAIN  # in-process callers may pass numbers: parse_headers reads those
        if lower == "correlation-id" and cid is None and _CORRELATION_ID.fullmatch(value):
            cid = value
        elif lower == "session-id" and session_id is None:
            session_id = value.strip() or None
            if session_id is None:
                return _NOT_PLAIN
        elif lower == "authorization" and authorization is None:
            authorization = value.strip() or None
            if authorization is None:
                return _NOT_PLAIN
        else:  # anything else, a second spelling, or a value parse_headers would refuse
            return _NOT_PLAIN
    return True, cid, session_id, authorization


_NOT_PLAIN = (False, None, None, None)


_TEMPLATE = re.compile(r"^\[(\d+)((?:\.[^.\[\]]+)*)\]$")


def fill_template(value: Any, results: dict[int, Any]) -> Any:
    """Replace every string `"[N]"` / `"[N.key.0]"` in `value` by (a part of) result N of the batch.

    Raises InvalidParams when the template names a result that is missing or has no such key,
    or when `value` nests too deeply to walk.
    """
    if type(value) is str:
        match = _TEMPLATE.match(value)
        if match is None:
            return value
        index = int(match[1])
        if index not in results:
            raise InvalidParams(
                f"Invalid params: template {value} refers to no earlier result",
                data={"field": None, "reason": "template"},
            )
        found = results[index]
        for part in match[2].split(".")[1:]:
            try:
                found = found[int(part)] if isinstance(found, list) and part.lstrip("-").isdigit() else found[part]
            except (KeyError, IndexError, TypeError):
                raise InvalidParams(
                    f"Invalid params: template {value}: no {part!r} in result {index}",
                    data={"field": None, "reason": "template"},
                ) from None
        return found
    try:
        if type(value) is dict:
            return {k: fill_template(v, results) for k, v in value.items()}
        if type(value) is list:
            return [fill_template(v, results) for v in value]
    except RecursionError:
        raise InvalidParams(
            "Invalid params: nested too deeply", data={"field": None, "reason": "nested too deeply"}
        ) from None
    return value
