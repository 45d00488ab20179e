"""One suite for every Locks backend (parametrized by the `backend` fixture)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kaiju.locks.base import LockExistsError, LockLostError, LockTimeout, NotLockOwnerError
from kaiju.testing import eventually
from kaiju.testing.services import started

TTL = 0.3  # for locks let expire on purpose; held locks that must stay renewed use wider ones


def _expired(locks, key: str):
    async def predicate() -> bool:
        return await locks.owner(key) is None

    return predicate


def waiting(locks, key: str) -> int:
    """How many acquire() calls on this service wait for `key` (to wait on their turn, not sleep)."""
    pending = locks._waiters if hasattr(locks, "_waiters") else locks._released  # memory, Redis
    return sum(not fut.done() for fut in pending.get(locks.full_key(key), ()))


async def test_acquire_release(locks):
    info = await locks.acquire("a", ttl=5)
    assert info.token >= 1
    assert await locks.owner("a") == info.id
    assert await locks.exists("a")
    assert await locks.is_owner("a")
    assert await locks.is_owner("a", info.id)
    assert not await locks.is_owner("a", "someone-else")
    await locks.release("a", info.id)
    assert await locks.owner("a") is None
    assert not await locks.is_owner("a")


async def test_wait_false_raises_exists(locks):
    await locks.acquire("a", ttl=5)
    with pytest.raises(LockExistsError):
        await locks.acquire("a", ttl=5, wait=False)


async def test_timeout(locks):
    await locks.acquire("a", ttl=5)
    with pytest.raises(LockTimeout):
        await locks.acquire("a", ttl=5, timeout=0.05)


async def test_waiter_gets_lock_after_release(locks):
    first = await locks.acquire("a", ttl=5)
    waiter = asyncio.create_task(locks.acquire("a", ttl=5, timeout=5))
    await eventually(lambda: waiting(locks, "a") == 1, what="the second acquire to wait")
    assert not waiter.done()
    await locks.release("a", first.id)
    second = await asyncio.wait_for(waiter, 5)
    assert second.token > first.token
    assert await locks.owner("a") == second.id


async def test_waiter_gets_lock_after_expiry(locks):
    first = await locks.acquire("a", ttl=TTL, renew=False)
    second = await locks.acquire("a", ttl=5, timeout=5)
    assert second.token > first.token
    assert await locks.owner("a") == second.id


async def test_five_parallel_acquires_one_wins(locks):
    results = await asyncio.gather(
        *(locks.acquire("x", ttl=5, wait=False) for _ in range(5)), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, LockExistsError)]
    assert len(won) == 1 and len(lost) == 4
    assert await locks.owner("x") == won[0].id


async def test_parallel_waiters_hold_one_at_a_time(locks):
    holding = 0
    most = 0

    async def worker():
        nonlocal holding, most
        async with locks.lock("x", ttl=5, timeout=10):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.005)
            holding -= 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(5))), 20)
    assert most == 1
    assert await locks.owner("x") is None


async def test_fencing_tokens_strictly_increase(locks):
    tokens = []
    for _ in range(5):
        info = await locks.acquire("f", ttl=5)
        tokens.append(info.token)
        await locks.release("f", info.id)
    assert tokens == sorted(set(tokens))
    assert len(tokens) == 5


async def test_stale_holder_cannot_release_or_renew(locks):
    stale = await locks.acquire("s", ttl=TTL, renew=False)
    fresh = await locks.acquire("s", ttl=5, timeout=5)  # waits out the stale holder's TTL
    with pytest.raises(NotLockOwnerError):
        await locks.release("s", stale.id)
    with pytest.raises(NotLockOwnerError):
        await locks.renew("s", stale.id)
    assert await locks.owner("s") == fresh.id


async def test_expired_lock_cannot_be_renewed(locks):
    stale = await locks.acquire("s", ttl=0.05, renew=False)
    await eventually(_expired(locks, "s"), what="the lock to expire")
    with pytest.raises(NotLockOwnerError):
        await locks.renew("s", stale.id)
    with pytest.raises(NotLockOwnerError):
        await locks.release("s", stale.id)


async def test_renewal_keeps_lock_past_ttl(locks):
    # a TTL with room: renewals come every third of it, and a loaded machine may delay one
    async with locks.lock("r", ttl=1.5) as info:
        await asyncio.sleep(3.5)  # past two TTLs: only renewal keeps it
        assert await locks.owner("r") == info.id
    assert await locks.owner("r") is None


async def test_lost_lock_cancels_body(locks):
    with pytest.raises(LockLostError):
        async with locks.lock("l", ttl=TTL):
            # a stalled holder: the loop is blocked past the TTL, so the next renewal finds it expired
            time.sleep(TTL * 2)
            await asyncio.wait_for(asyncio.Event().wait(), 5)
    assert await locks.owner("l") is None


async def test_m_exists(locks):
    await locks.acquire("a", ttl=5)
    await locks.acquire("c", ttl=5)
    assert await locks.m_exists(["a", "b", "c"]) == frozenset({"a", "c"})
    assert await locks.m_exists([]) == frozenset()


async def test_stop_releases_held_locks(make_locks, backend):
    if backend == "memory":
        pytest.skip("memory locks live and die with their service: nobody else can see them")
    services = make_locks()
    other = make_locks()
    async with started(*other):
        async with started(*services):
            await services[-1].acquire("held", ttl=30)
            assert await other[-1].exists("held")
        assert not await other[-1].exists("held")


async def test_bad_input(locks):
    with pytest.raises(ValueError):
        await locks.acquire("", ttl=1)
    with pytest.raises(ValueError):
        await locks.acquire("a", ttl=0)
    with pytest.raises(ValueError):
        await locks.acquire("a", ttl=1, timeout=-1)


async def test_stop_leaves_unrenewed_locks_to_their_ttl(make_locks, backend):
    if backend == "memory":
        pytest.skip("memory locks live and die with their service: nobody else can see them")
    services, other = make_locks(), make_locks()
    async with started(*other):
        async with started(*services):
            await services[-1].acquire("once", ttl=30, renew=False)
            await services[-1].acquire("held", ttl=30)
        # a renew=False lock (a pause, a singleton claim) outlives its taker; a renewed one does not
        assert await other[-1].m_exists(["once", "held"]) == frozenset({"once"})


async def test_cancelled_waiter_does_not_block_the_next(locks):
    first = await locks.acquire("c", ttl=5)
    cancelled = asyncio.create_task(locks.acquire("c", ttl=5))
    patient = asyncio.create_task(locks.acquire("c", ttl=5, timeout=4))
    await eventually(lambda: waiting(locks, "c") == 2, what="both acquires to wait")
    await locks.release("c", first.id)
    cancelled.cancel()  # woken (or about to be) but gone: the wake-up must reach the other waiter
    await asyncio.gather(cancelled, return_exceptions=True)
    if not cancelled.cancelled():  # on a busy loop it took the lock before the cancel came: a holder like any
        await locks.release("c", cancelled.result().id)
    info = await patient  # within its own timeout (LockTimeout otherwise)
    assert await locks.owner("c") == info.id


async def test_locks_on_ever_new_keys_leave_nothing_behind(locks, backend):
    for batch in range(5):  # e.g. one singleton claim per task run
        for i in range(300):
            await locks.acquire(f"run.{batch}.{i}", ttl=0.01, renew=False)
        await asyncio.sleep(0.03)
    info = await locks.acquire("run.last", ttl=5, renew=False)
    if backend == "memory":
        assert len(locks._entries) <= 1024  # expired ones are forgotten as the table grows
    else:
        client = locks.redis.client
        assert await client.exists(locks.fence_key) == 1
        every_node = {"target_nodes": "primaries"} if backend == "cluster" else {}
        assert len(await client.keys("*", **every_node)) == 2  # the last lock and the one fencing counter
    assert info.token == 1501


async def test_lost_lock_reported_when_body_swallows_the_cancel(locks):
    with pytest.raises(LockLostError):
        async with locks.lock("l", ttl=TTL):
            time.sleep(TTL * 2)  # stalled past the TTL
            try:
                await asyncio.wait_for(asyncio.Event().wait(), 5)
            except asyncio.CancelledError:
                pass  # a careless body
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)  # no stray cancellation left for the caller


async def test_waiter_gives_up_when_the_service_stops(make_locks):
    from kaiju.locks.base import LockError

    services = make_locks()
    locks = services[-1]
    async with started(*services):
        await locks.acquire("a", ttl=30, renew=False)
        waiter = asyncio.create_task(locks.acquire("a", ttl=30, timeout=30))
        await eventually(lambda: waiting(locks, "a") == 1, what="the acquire to wait")
        assert not waiter.done()
        await locks.stop()  # the waiter must not take the lock after this
        with pytest.raises(LockError, match="not running"):
            await asyncio.wait_for(waiter, 10)


async def test_acquire_on_a_stopped_service_is_refused(make_locks):
    from kaiju.locks.base import LockError

    services = make_locks()
    async with started(*services):
        pass
    with pytest.raises(LockError, match="not running"):
        await services[-1].acquire("a", ttl=1)


async def test_shared_keys_live_in_the_envs_shared_namespace(locks):
    info = await locks.acquire("k", ttl=5, shared=True)
    assert locks.full_key("k", shared=True) == "{" + locks.app.shared_namespace.get_key("_lock") + "}.k"
    assert await locks.owner("k", shared=True) == info.id
    assert await locks.owner("k") is None  # the app's own "k" is another lock
    assert await locks.m_exists(["k", "x"], shared=True) == {"k"}
    own = await locks.acquire("k", ttl=5, wait=False)
    assert await locks.is_owner("k", own.id) and await locks.is_owner("k", info.id, shared=True)
    await locks.release("k", info.id, shared=True)
    assert not await locks.exists("k", shared=True) and await locks.exists("k")
    async with locks.lock("held", ttl=1.0, shared=True) as held:
        await asyncio.sleep(1.5)  # renewed past its ttl under the shared key
        assert await locks.owner("held", shared=True) == held.id
    assert await locks.owner("held", shared=True) is None


async def test_a_shared_lock_reaches_another_app(make_locks, backend):
    from kaiju.runtime.service import App

    if backend == "memory":
        pytest.skip("memory locks live in one service: no other app can see them")
    one, two = make_locks(), make_locks()
    async with started(*one, app=App(name="a", env="e")), started(*two, app=App(name="b", env="e")):
        a, b = one[-1], two[-1]
        first = await a.acquire("pause", ttl=5, shared=True)
        assert await b.owner("pause", shared=True) == first.id
        with pytest.raises(LockExistsError):
            await b.acquire("pause", ttl=5, wait=False, shared=True)
        await b.acquire("pause", ttl=5, wait=False)  # b's own "pause" is another key
        await a.release("pause", first.id, shared=True)
        second = await b.acquire("pause", ttl=5, wait=False, shared=True)
        assert second.token > first.token  # one fencing counter for the shared namespace


async def test_a_lock_block_cancelled_from_outside_raises_cancelled_and_releases(locks):
    inside = asyncio.Event()

    async def holder():
        async with locks.lock("c", ttl=30):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await asyncio.wait_for(inside.wait(), 10)
    assert await locks.exists("c")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # the caller's own cancellation, not LockLostError
        await asyncio.wait_for(task, 10)
    assert await locks.owner("c") is None  # released on the way out, not left to its 30 s TTL


async def test_an_acquire_cancelled_on_its_way_leaves_no_lock_behind(locks, backend):
    if backend == "memory":
        pytest.skip("a memory acquire is never on its way to a server")
    client, batch = locks.redis.client, locks.redis.batch
    every_master = {"target_nodes": "primaries"} if backend == "cluster" else {}
    await client.client_pause(10_000, all=False, **every_master)  # writes (the script) wait on the server
    try:
        sent = batch.counts["commands"]
        attempt = asyncio.ensure_future(locks.acquire("gone", ttl=30))
        await eventually(lambda: batch.counts["commands"] > sent, what="the acquire to be sent")
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
    finally:
        await client.client_unpause(**every_master)

    async def script_ran() -> bool:
        return await client.get(locks.fence_key) == b"1"

    async def free() -> bool:
        return await locks.owner("gone") is None

    await eventually(script_ran, what="the acquire script to run after all")
    await eventually(free, what="the lock taken for the cancelled caller to be given back")
