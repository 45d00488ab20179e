"""RPC middleware and a service for the middleware tests, named in configs by module path."""

from __future__ import annotations

from typing import Any

from kaiju import rpc
from kaiju.runtime.service import Service

# (method, transport) of every call `record` saw, in this process
SEEN: list[tuple[str, str]] = []


async def record(call: Any, call_next: Any) -> Any:
    """Note each call's method and transport."""
    SEEN.append((call.method, call.transport))
    return await call_next(call)


async def stamp(call: Any, call_next: Any) -> Any:
    """Answer `sample.whoami` with the transport it came by, instead of the method's result;
    refuse `sample.forbidden` with an RPC error, running nothing."""
    if call.method == "sample.forbidden":
        raise rpc.PermissionDenied("refused by a middleware")
    result = await call_next(call)
    if call.method == "sample.whoami":
        return {"transport": call.transport, "result": result}
    return result


def not_async(call: Any, call_next: Any) -> Any:
    return call_next(call)


class Sample(Service):
    service_name = "sample"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.ran: list[str] = []

    @rpc.method(permission=rpc.Scope.GUEST)
    async def whoami(self) -> str:
        self.ran.append("whoami")
        return "sample"

    @rpc.method(permission=rpc.Scope.GUEST)
    async def forbidden(self) -> str:
        self.ran.append("forbidden")
        return "ran"
