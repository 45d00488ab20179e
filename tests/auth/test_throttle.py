"""The failed-login throttle's slots, claimed in the cache."""

from __future__ import annotations

import asyncio

from kaiju.auth.throttle import LoginThrottle, Slot
from kaiju.cache.memory import MemoryCache
from kaiju.testing.services import started
from tests.auth.support import eventually


async def test_parallel_guesses_cannot_share_a_slot():
    cache = MemoryCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=3, lockout=60, wait=30)
        claims = [asyncio.ensure_future(throttle.claim("alice")) for _ in range(10)]

        async def three_claimed():
            return sum(c.done() for c in claims) >= 3

        await eventually(three_claimed, what="three claims")
        slots = [c.result() for c in claims if c.done()]
        for slot in slots:  # those guesses turn out wrong: the waiting ones are locked out
            await throttle.failed(slot)
        results = await asyncio.gather(*claims)
        assert sum(isinstance(r, Slot) for r in results) == 3
        assert all(isinstance(r, float) and 0 < r <= 60 for r in results if not isinstance(r, Slot))


async def test_a_freed_slot_can_be_claimed_again():
    cache = MemoryCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=1, lockout=60, wait=0.1)
        slot = await throttle.claim("alice")
        await throttle.succeeded(slot)
        slot = await throttle.claim("alice")
        assert isinstance(slot, Slot)
        await throttle.failed(slot)
        assert isinstance(await throttle.claim("alice"), float)
        assert isinstance(await throttle.claim("bob"), Slot)  # per username
