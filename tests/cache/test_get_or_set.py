"""get_or_set: single-flight loading, on both backends."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import msgspec
import pytest

from kaiju.testing import eventually
from kaiju.testing.services import started


def counting_loader(value="loaded", delay=0.05):
    calls = []

    async def loader():
        calls.append(1)
        await asyncio.sleep(delay)
        return value

    return loader, calls


async def test_hit_does_not_call_loader(cache):
    await cache.set("k", "cached")
    loader, calls = counting_loader()
    assert await cache.get_or_set("k", loader) == "cached"
    assert calls == []


async def test_miss_loads_and_stores(cache):
    loader, calls = counting_loader({"a": 1})
    assert await cache.get_or_set("k", loader, ttl=30) == {"a": 1}
    assert await cache.get("k") == {"a": 1}
    assert len(calls) == 1


async def test_sync_loader(cache):
    assert await cache.get_or_set("k", lambda: 5) == 5


async def test_thousand_concurrent_misses_call_loader_once(cache):
    loader, calls = counting_loader()
    results = await asyncio.wait_for(asyncio.gather(*(cache.get_or_set("k", loader, ttl=30) for _ in range(1000))), 30)
    assert results == ["loaded"] * 1000
    assert len(calls) == 1


def waiting_for_a_flight(task: asyncio.Task) -> bool:
    """Whether `task`, a get_or_set call, waits for a loader's shared flight: suspended in the
    cache's `_shared` (its await on the shield around the loader's task), not in a loader of its
    own, nor still in the read before it (with Redis that is a future too, but a late miss may
    start a flight of its own once the first one is over)."""
    awaiting, shared = task.get_coro(), False
    while asyncio.iscoroutine(awaiting):
        if awaiting.cr_frame is None or awaiting.cr_code.co_name == "loader":
            return False
        shared = shared or awaiting.cr_code.co_name == "_shared"
        awaiting = awaiting.cr_await
    return shared and awaiting is not None  # a future's iterator


async def test_loader_error_reaches_every_waiter_and_stores_nothing(cache):
    release, calls = asyncio.Event(), []

    async def failing():
        calls.append(1)
        await release.wait()
        raise RuntimeError("backend down")

    tasks = [asyncio.create_task(cache.get_or_set("k", failing)) for _ in range(10)]
    await eventually(lambda: len(calls) == 1 and all(map(waiting_for_a_flight, tasks)), what="one loader and ten waiters")
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    assert all(isinstance(r, RuntimeError) and str(r) == "backend down" for r in results), results
    assert len(calls) == 1  # the waiters got the loader's error, not a call of their own
    assert not await cache.exists("k")
    assert await cache.get_or_set("k", lambda: "ok") == "ok"


async def test_a_cancelled_caller_leaves_the_loader_running_for_the_others(cache):
    release, calls = asyncio.Event(), []

    async def loader():
        calls.append(1)
        await release.wait()
        return "loaded"

    first = asyncio.create_task(cache.get_or_set("k", loader, ttl=30))
    await eventually(lambda: calls, what="the first caller's loader to run")
    second = asyncio.create_task(cache.get_or_set("k", loader, ttl=30))
    await eventually(lambda: waiting_for_a_flight(second), what="the second caller to wait for the first's loader")
    first.cancel()  # its deadline passed, or its client went away
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await asyncio.wait_for(second, 15) == "loaded"
    assert len(calls) == 1


async def test_a_value_is_stored_when_every_caller_went_away(cache):
    release = asyncio.Event()

    async def loader():
        await release.wait()
        return "late"

    caller = asyncio.create_task(cache.get_or_set("k", loader, ttl=30))
    await eventually(lambda: waiting_for_a_flight(caller), what="the caller to wait for its loader")
    caller.cancel()
    release.set()
    await eventually(lambda: cache.exists("k"), what="the loader's value to be stored")
    assert await cache.get("k") == "late"


async def test_a_loader_ended_by_a_cancellation_is_an_error_for_its_waiters(cache):
    gate = asyncio.get_running_loop().create_future()

    async def loader():
        await gate  # something the loader awaits is cancelled under it
        return "never"

    waiters = [asyncio.create_task(cache.get_or_set("k", loader)) for _ in range(3)]
    await eventually(lambda: all(map(waiting_for_a_flight, waiters)), what="three waiters")
    gate.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    # an error each, never a CancelledError: a caller cancelled by nobody would close its connection
    assert all(type(r) is RuntimeError and "cancelled" in str(r) for r in results), results
    assert await cache.get_or_set("k", lambda: "ok") == "ok"


async def test_single_flight_across_services(make_cache, backend):
    if backend == "memory":
        pytest.skip("memory caches are not shared between services")
    one, two = make_cache(), make_cache()
    loader, calls = counting_loader(delay=0.1)
    async with started(*one), started(*two):
        results = await asyncio.wait_for(
            asyncio.gather(*(c[-1].get_or_set("k", loader, ttl=30) for c in (one, two) for _ in range(500))), 30
        )
    assert results == ["loaded"] * 1000
    assert len(calls) == 1


class Price(msgspec.Struct):
    id: uuid.UUID
    amount: Decimal


async def test_typed_get_or_set(cache):
    price = Price(uuid.uuid4(), Decimal("3.50"))
    loaded = await cache.get_or_set("p", lambda: price, type=Price)
    cached = await cache.get_or_set("p", lambda: None, type=Price)
    assert loaded == cached == price
    assert isinstance(cached.id, uuid.UUID) and isinstance(cached.amount, Decimal)
