"""Shared pieces of the stream tests: a service recording what it ran, and a bounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kaiju import rpc
from kaiju.rpc.context import current
from kaiju.runtime.service import Service


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


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
