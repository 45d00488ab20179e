"""A service for the attack replays run as real `kaiju-run` processes (tests/auth/test_attacks.py)."""

from __future__ import annotations

import asyncio

from kaiju import rpc
from kaiju.cache.base import Cache
from kaiju.rpc import Scope
from kaiju.runtime.service import Service


class Slow(Service):
    """A value loaded once through the cache's single flight, slowly; counts its loads."""

    service_name = "slow"

    cache: Cache
    delay: float = 0.5

    async def start(self) -> None:
        self.loads = 0

    async def _load(self) -> str:
        self.loads += 1
        await asyncio.sleep(self.delay)
        return "loaded"

    @rpc.method(permission=Scope.GUEST)
    async def value(self) -> str:
        return await self.cache.get_or_set("slow.value", self._load, ttl=60)

    @rpc.method(permission=Scope.GUEST)
    async def load_count(self) -> int:
        return self.loads
