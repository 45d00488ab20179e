from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from kaiju import rpc
from kaiju.rpc import RPCServer, Scope
from kaiju.rpc.context import current
from kaiju.runtime.service import Service
from kaiju.testing.services import started


class Item(msgspec.Struct):
    name: str
    qty: int = 1


class Calc(Service):
    """Methods covering the JSON-RPC spec examples and kaiju-tools' cases."""

    service_name = "calc"

    async def start(self) -> None:
        self.flaky_calls = 0
        self.notified: list[Any] = []
        self.inside = 0
        self.all_inside = asyncio.Event()
        self.active = self.most_active = 0

    @rpc.method(permission=Scope.GUEST)
    async def subtract(self, minuend: int, subtrahend: int) -> int:
        """minuend - subtrahend."""
        return minuend - subtrahend

    @rpc.method(permission=Scope.GUEST)
    async def sum(self, a: int, b: int = 0, c: int = 0) -> int:
        return a + b + c

    @rpc.method(permission=Scope.GUEST)
    async def update(self, a: int = 0, b: int = 0, c: int = 0, d: int = 0, e: int = 0) -> None:
        self.notified.append([a, b, c, d, e])

    @rpc.method(name="notify_hello", permission=Scope.GUEST)
    async def notify_hello(self, value: int = 0) -> None:
        self.notified.append(value)

    @rpc.method(name="get_data", permission=Scope.GUEST)
    async def get_data(self) -> list:
        return ["hello", 5]

    @rpc.method(permission=Scope.USER)
    async def items(self, items: list[Item], _secret: str = "kept") -> dict:
        return {"count": sum(i.qty for i in items), "names": [i.name for i in items], "secret": _secret}

    @rpc.method(permission=Scope.USER)
    async def options(self, key: str, **extra: Any) -> dict:
        return {"key": key, **extra}

    @rpc.method(permission=Scope.ADMIN)
    async def admin_only(self) -> str:
        return "admin"

    @rpc.method
    async def system_only(self) -> str:
        return "system"

    @rpc.method(permission=Scope.GUEST)
    async def fail(self, message: str = "boom") -> None:
        raise ValueError(message)

    @rpc.method(permission=Scope.GUEST)
    async def refuse(self) -> None:
        raise rpc.PermissionDenied("not yours")

    @rpc.method(permission=Scope.GUEST)
    async def flaky(self, failures: int) -> int:
        self.flaky_calls += 1
        if self.flaky_calls <= failures:
            raise ConnectionError("flaky")
        return self.flaky_calls

    @rpc.method(permission=Scope.GUEST)
    async def track(self, seconds: float) -> int:
        """Sleep `seconds`, recording how many calls ran at once (`most_active`)."""
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.active -= 1
        return self.most_active

    @rpc.method(permission=Scope.GUEST)
    async def meet(self, count: int) -> int:
        """Return only once `count` calls are inside at the same time (a barrier)."""
        self.inside += 1
        if self.inside >= count:
            self.all_inside.set()
        await self.all_inside.wait()
        return count

    @rpc.method(permission=Scope.GUEST)
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @rpc.method(permission=Scope.GUEST)
    async def context(self) -> dict:
        ctx = current()
        return {
            "correlation_id": ctx.correlation_id,
            "scope": ctx.scope.name,
            "session": ctx.session.id if ctx.session else None,
            "method": ctx.method,
            "time_left": ctx.time_left(),
        }

    @rpc.method
    async def nested(self, inner_headers: dict | None = None) -> dict:
        """Reads its context, calls `calc.context` through the server, reads its context again."""
        before = current()
        before_fields = (before.correlation_id, before.method)
        inner = await self.rpc_server.call("calc.context", headers=inner_headers)
        after = current()
        return {"before": before_fields, "inner": inner, "after": (after.correlation_id, after.method), "same": after is before}

    @rpc.method(permission=Scope.GUEST)
    async def obj(self) -> Any:
        return object()


@pytest.fixture
def calc() -> Calc:
    return Calc()


@pytest.fixture
def make_server():
    def make(**settings: Any) -> RPCServer:
        return RPCServer(**settings)

    return make


@pytest.fixture
async def server(calc):
    srv = RPCServer(max_parallel_tasks=16)
    calc.rpc_server = srv
    async with started(calc, srv):
        yield srv


def decode(body: bytes | None) -> Any:
    return None if body is None else msgspec.json.decode(body)
