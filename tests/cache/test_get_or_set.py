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
    """Whether `task`, a get_or_set call, waits for another caller's loader (not its own)."""
    coro = task.get_coro()  # suspended at `await asyncio.shield(filling)`: on a future, not on its own _fill()
    awaiting = coro.cr_await
    return coro.cr_frame is not None and coro.cr_frame.f_locals.get("filling") is not None and awaiting is not None and not asyncio.iscoroutine(awaiting)


async def test_loader_error_reaches_every_waiter_and_stores_nothing(cache):
    release, calls = asyncio.Event(), []

    async def failing():
        calls.append(1)
        await release.wait()
        raise RuntimeError("backend down")

    tasks = [asyncio.create_task(cache.get_or_set("k", failing)) for _ in range(10)]
    await eventually(lambda: len(calls) == 1 and sum(map(waiting_for_a_flight, tasks)) == 9, what="one loader and nine waiters")
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(calls) == 1  # the waiters got the loader's error, not a call of their own
    assert not await cache.exists("k")
    assert await cache.get_or_set("k", lambda: "ok") == "ok"


async def test_cancelled_loader_lets_a_waiter_take_over(cache):
    slow, slow_calls = counting_loader(delay=30)
    first = asyncio.create_task(cache.get_or_set("k", slow))
    await eventually(lambda: slow_calls, what="the first loader to run")
    loader, calls = counting_loader("second")
    second = asyncio.create_task(cache.get_or_set("k", loader))
    await eventually(lambda: waiting_for_a_flight(second), what="the second caller to wait for the first")
    first.cancel()
    assert await asyncio.wait_for(second, 15) == "second"
    assert len(calls) == 1


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
