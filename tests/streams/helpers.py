"""Shared pieces of the stream tests: a service recording what it ran, and a bounded wait."""

from __future__ import annotations

import asyncio
from typing import Any

from kaiju import rpc
from kaiju.rpc.context import current
from kaiju.runtime.service import Service
from kaiju.testing import eventually


until = eventually  # the shared bounded wait (kaiju.testing.eventually), by the name these tests use


class Recorder(Service):
    """RPC methods that record each run: `rec.echo`, `rec.slow`, `rec.fail`."""

    service_name = "rec"
    delay: float = 0.0

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.calls: list[tuple[str, Any, dict]] = []
        self.started_runs: list[Any] = []
        self.release = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self, exception: Exception | None = None) -> None:
        self.stopped = True

    def _record(self, name: str, value: Any) -> None:
        ctx = current()
        user = ctx.session.user_id if ctx.session is not None else None
        facts = {"correlation_id": ctx.correlation_id, "headers": dict(ctx.headers or {}), "scope": ctx.scope, "user": user}
        self.calls.append((name, value, facts))

    def values(self, name: str = "echo") -> list[Any]:
        return [v for n, v, _ in self.calls if n == name]

    @rpc.method
    async def echo(self, value: Any) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        self._record("echo", value)
        return value

    @rpc.method
    async def slow(self, value: Any) -> Any:
        self.started_runs.append(value)
        await self.release.wait()
        self._record("slow", value)
        return value

    @rpc.method
    async def fail(self, value: Any) -> None:
        self._record("fail", value)
        raise RuntimeError(f"poison {value}")
