"""What the fleet tests' `kaiju-run` processes run: jobs that push to a Redis list, so that
every run in any process is counted (`FLEET_REDIS`: the server's URL, `FLEET_DONE`: the list)."""

from __future__ import annotations

import os

from kaiju import rpc
from kaiju.runtime.service import Service


async def _push(value: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(os.environ["FLEET_REDIS"])
    try:
        await client.rpush(os.environ["FLEET_DONE"], value)
    finally:
        await client.aclose()


async def mark(name: str) -> None:
    """A task's job: push its name."""
    await _push(name)


class Work(Service):
    """`work.item(n)`: push n; `work.fail(n)`: push "fail<n>", then fail (a stream listener's methods)."""

    service_name = "work"

    @rpc.method
    async def item(self, n: int) -> None:
        await _push(str(n))

    @rpc.method
    async def fail(self, n: int) -> None:
        await _push(f"fail{n}")
        raise RuntimeError(f"item {n} failed")
