"""The failed-login throttle's slots, claimed in the cache, and the per-client limit."""

from __future__ import annotations

import asyncio

import pytest

from kaiju.auth.throttle import Attempt, ClientLimit, LoginThrottle, Refused, Slot, normalise_username
from kaiju.cache.memory import MemoryCache
from kaiju.testing import eventually
from kaiju.testing.services import started


async def test_parallel_guesses_cannot_share_a_slot_and_nobody_waits():
    cache = MemoryCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=3, lockout=60)
        claims = asyncio.gather(*(throttle.claim("alice") for _ in range(10)))
        # nobody waits: every claim is answered within a few loop turns (the cache is in memory)
        # although the three slots stay taken; a claim that waited for one would hang here
        for _ in range(100):
            if claims.done():
                break
            await asyncio.sleep(0)
        assert claims.done(), "a claim waited for a slot"
        results = claims.result()
        slots = [r for r in results if isinstance(r, Slot)]
        assert len({s.key for s in slots}) == len(slots) == 3
        # the others are refused at once: busy, not locked (no failure was counted)
        assert all(r == Refused(1.0, False) for r in results if not isinstance(r, Slot)), results
        for slot in slots:  # those guesses turn out wrong: now the account is locked out
            await throttle.failed(slot)
        refused = await throttle.claim("alice")
        assert isinstance(refused, Refused) and refused.locked and 59 < refused.retry_after <= 60


class GatedCache(MemoryCache):
    """A MemoryCache whose `add` waits at a gate (a slow store), saying when one has arrived."""

    async def start(self) -> None:
        await super().start()
        self.gate, self.arrived = asyncio.Event(), asyncio.Event()
        self.landed = 0

    async def add(self, *args, **kwargs) -> bool:
        self.arrived.set()
        await self.gate.wait()
        try:
            return await super().add(*args, **kwargs)
        finally:
            self.landed += 1


async def test_a_slot_claimed_for_a_caller_that_left_is_freed_when_the_claim_lands():
    cache = GatedCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=1, lockout=60)
        caller = asyncio.ensure_future(Attempt(throttle).claim("alice"))
        await cache.arrived.wait()
        caller.cancel()  # its deadline, or the client went away, while the store was writing
        with pytest.raises(asyncio.CancelledError):
            await caller
        cache.gate.set()  # the claim lands after its caller has gone: nobody will settle it
        await eventually(lambda: cache.landed == 1, what="the orphaned claim written")

        async def free() -> bool:  # the account's one slot (pending for 30 s unless freed)
            return isinstance(await throttle.claim("alice"), Slot)

        await eventually(free, what="the orphaned slot freed")


async def test_a_freed_slot_can_be_claimed_again():
    cache = MemoryCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=1, lockout=60)
        slot = await throttle.claim("alice")
        await throttle.release(slot)
        slot = await throttle.claim("alice")
        assert isinstance(slot, Slot)
        await throttle.failed(slot)
        assert (await throttle.claim("alice")).locked
        assert isinstance(await throttle.claim("bob"), Slot)  # per account


async def test_an_attempt_cut_short_counts_nothing_and_a_wrong_one_counts_once_per_name():
    cache = MemoryCache()
    async with started(cache):
        throttle = LoginThrottle(cache, max_failures=2, lockout=60)
        for _ in range(5):  # cancelled, timed out, failed in the store: settled without a verdict
            attempt = Attempt(throttle)
            assert await attempt.claim("alice") is None and await attempt.claim("id:1") is None
            await attempt.settle(failed=False)
        assert len(cache) == 0
        for _ in range(2):
            attempt = Attempt(throttle)
            assert await attempt.claim("alice") is None and await attempt.claim("id:1") is None
            await attempt.settle(failed=True)
        # both the name and the user id are locked out now
        assert (await throttle.claim("alice")).locked and (await throttle.claim("id:1")).locked


@pytest.mark.parametrize("spelling", ["ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45", "alice"])
def test_every_spelling_of_a_name_is_one_account(spelling):
    assert normalise_username(spelling) == "alice"


def test_the_client_limit_allows_a_burst_then_refuses_and_successes_are_given_back():
    limit = ClientLimit(attempts=3, window=60)
    assert [limit.take("10.0.0.1") for _ in range(3)] == [None, None, None]
    wait = limit.take("10.0.0.1")
    assert wait is not None and 19 < wait <= 20  # one more every window / attempts seconds
    assert limit.take("10.0.0.2") is None  # per client
    limit.give_back("10.0.0.1")  # one of the three succeeded
    assert limit.take("10.0.0.1") is None and limit.take("10.0.0.1") is not None
