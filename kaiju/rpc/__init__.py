"""JSON-RPC: expose service methods with `@rpc.method`, serve them with `RPCServer`.

    from kaiju import rpc

    class Users(kaiju.Service):
        @rpc.method(permission=rpc.Scope.GUEST)
        async def get(self, id: int) -> dict: ...

Names are imported lazily: `import kaiju.rpc` loads only what is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.rpc.access import Scope, Session
    from kaiju.rpc.answer import Answer
    from kaiju.rpc.context import RequestContext, current
    from kaiju.rpc.errors import (
        Aborted,
        InternalError,
        InvalidParams,
        InvalidRequest,
        JSONParseError,
        MethodNotFound,
        NotAuthorized,
        Overloaded,
        ParseError,
        PermissionDenied,
        RequestTimeout,
        RPCError,
        TooManyRequests,
    )
    from kaiju.rpc.methods import Method, method
    from kaiju.rpc.middleware import Call
    from kaiju.rpc.server import RPCServer
    from kaiju.rpc.sessions import Authenticator, SessionStore

__getattr__ = _front_door(__name__, __file__, globals())
