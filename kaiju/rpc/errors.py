"""JSON-RPC errors: one exception class per error type, each with its code.

A method may raise any of these to answer with that error; any other exception a
method raises is answered as `InternalError` (the original kept in `base_exc`).
On the wire an error is `{"code": int, "message": str, "data": {"type": <class name>, ...}}`,
with kaiju-tools' type names, so clients map `data.type` back to the class (`error_from_dict`).
"""

from __future__ import annotations

import traceback
from typing import Any

__all__ = [
    "Aborted",
    "ERRORS",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "JSONParseError",
    "MethodNotFound",
    "NotAuthorized",
    "Overloaded",
    "ParseError",
    "PermissionDenied",
    "RPCError",
    "RequestTimeout",
    "TooManyRequests",
    "RETRYABLE",
    "error_from_dict",
]


class RPCError(Exception):
    """Base of every JSON-RPC error.

    `message` is the human text, `data` extra fields sent in `error.data` (beside `type`),
    `base_exc` the exception this one wraps (its details leave the server only in debug mode).
    """

    code: int = -32603
    default_message: str = "Internal error"

    def __init_subclass__(cls, code: int | None = None, message: str | None = None, **kwargs: Any):
        """`class NotFound(RPCError, code=-32050, message="Not found")`: an error type with its code."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if message is not None:
            cls.default_message = message

    def __init__(
        self, message: str | None = None, *, data: dict[str, Any] | None = None, base_exc: BaseException | None = None
    ):
        self.message = message or self.default_message
        self.data = data or {}
        self.base_exc = base_exc
        super().__init__(self.message)

    @property
    def type(self) -> str:
        """The error's type name as sent in `error.data.type`."""
        return type(self).__name__

    def to_dict(self, debug: bool = False) -> dict[str, Any]:
        """The JSON-RPC error object; with `debug` it also carries the wrapped exception and its traceback."""
        data = {"type": self.type, **self.data}
        if debug and self.base_exc is not None:
            exc = self.base_exc
            data["base_exc_type"] = type(exc).__name__
            data["base_exc_message"] = str(exc)
            data["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return {"code": self.code, "message": self.message, "data": data}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, data={self.data!r})"


class JSONParseError(RPCError, code=-32700, message="Parse error"):
    """The request body is not valid JSON (-32700)."""


ParseError = JSONParseError


class InvalidRequest(RPCError, code=-32600, message="Invalid request"):
    """The request is not a valid JSON-RPC 2.0 request object, or a header value is malformed (-32600)."""


class MethodNotFound(RPCError, code=-32601, message="Method not found"):
    """No such method, or the caller may not use it (-32601)."""


class InvalidParams(RPCError, code=-32602, message="Invalid params"):
    """The params do not fit the method's signature; `data` names the `field` and the `reason` (-32602)."""


class InternalError(RPCError, code=-32603, message="Internal error"):
    """The method failed with an exception of its own (kept in `base_exc`) (-32603)."""


class NotAuthorized(RPCError, code=-32000, message="Not authorized"):
    """The request needs (valid) credentials (-32000)."""


class Aborted(RPCError, code=-32001, message="Aborted"):
    """Not run: an earlier request of the batch failed and the batch aborts on error (-32001)."""


class RequestTimeout(RPCError, code=-32002, message="Request timeout"):
    """The request's timeout or deadline passed before the method finished (-32002)."""


class PermissionDenied(RPCError, code=-32003, message="Permission denied"):
    """A method refuses the caller for a reason of its own (e.g. not the object's owner) (-32003)."""


class Overloaded(RPCError, code=-32004, message="Overloaded"):
    """Refused without running: every `max_parallel_tasks` slot is taken and `max_queue`
    requests already wait for one; a client may try again later (-32004)."""


class TooManyRequests(RPCError, code=-32005, message="Too many requests"):
    """Refused without running: the caller is over a rate limit (`RPCServer.rate_limits`);
    `data.retry_after` says in how many seconds it may call again (-32005)."""


ERRORS: dict[str, type[RPCError]] = {
    cls.__name__: cls
    for cls in (
        RPCError,
        JSONParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotAuthorized,
        Aborted,
        RequestTimeout,
        PermissionDenied,
        Overloaded,
        TooManyRequests,
    )
}
ERRORS["ParseError"] = JSONParseError

# What `RPC-Retries` retries: failures that may pass on a second try.
RETRYABLE: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)


def error_from_dict(error: Any) -> RPCError:
    """The exception for a JSON-RPC error object received from a server (by `data.type`, else by code)."""
    if not isinstance(error, dict):
        return InternalError("Malformed error object", data={"error": error})
    data = error.get("data")
    data = dict(data) if isinstance(data, dict) else {}
    type_name = data.pop("type", None)
    cls = ERRORS.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        code = error.get("code")
        cls = next((c for c in ERRORS.values() if c.code == code and c is not RPCError), RPCError)
    exc = cls(str(error.get("message") or cls.default_message), data=data)
    if type(exc) is RPCError and isinstance(error.get("code"), int):
        exc.code = error["code"]
    return exc
