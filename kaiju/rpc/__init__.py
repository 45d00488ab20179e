"""JSON-RPC: expose service methods with `@rpc.method`, serve them with `RPCServer`.

    from kaiju import rpc

    class Users(kaiju.Service):
        @rpc.method(permission=rpc.Scope.GUEST)
        async def get(self, id: int) -> dict: ...

Names are imported lazily: `import kaiju.rpc` loads only what is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "method": "kaiju.rpc.methods",
    "Method": "kaiju.rpc.methods",
    "Scope": "kaiju.rpc.access",
    "Session": "kaiju.rpc.access",
    "RPCServer": "kaiju.rpc.server",
    "SessionStore": "kaiju.rpc.sessions",
    "Authenticator": "kaiju.rpc.sessions",
    "RequestContext": "kaiju.rpc.context",
    "current": "kaiju.rpc.context",
    "RPCError": "kaiju.rpc.errors",
    "JSONParseError": "kaiju.rpc.errors",
    "ParseError": "kaiju.rpc.errors",
    "InvalidRequest": "kaiju.rpc.errors",
    "MethodNotFound": "kaiju.rpc.errors",
    "InvalidParams": "kaiju.rpc.errors",
    "InternalError": "kaiju.rpc.errors",
    "NotAuthorized": "kaiju.rpc.errors",
    "Aborted": "kaiju.rpc.errors",
    "RequestTimeout": "kaiju.rpc.errors",
    "PermissionDenied": "kaiju.rpc.errors",
    "Overloaded": "kaiju.rpc.errors",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.rpc.access import Scope, Session
    from kaiju.rpc.context import RequestContext, current
    from kaiju.rpc.errors import (
        Aborted, InternalError, InvalidParams, InvalidRequest, JSONParseError, MethodNotFound, NotAuthorized,
        Overloaded, ParseError, PermissionDenied, RequestTimeout, RPCError,
    )
    from kaiju.rpc.methods import Method, method
    from kaiju.rpc.server import RPCServer
    from kaiju.rpc.sessions import Authenticator, SessionStore


__getattr__ = _lazy_getattr("kaiju.rpc", _EXPORTS, globals())
