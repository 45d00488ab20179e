"""One suite for every Cache backend (parametrized by the `backend` fixture)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import msgspec
import pytest

from kaiju.runtime.service import App
from kaiju.testing import eventually
from kaiju.testing.services import started

TTL = 1.0  # room to read a value back before it expires on a loaded machine


class Item(msgspec.Struct):
    id: uuid.UUID
    price: Decimal
    made: date
    seen: datetime
    tags: list[str] = []


async def test_get_set(cache):
    assert await cache.get("a") is None
    await cache.set("a", {"x": [1, 2.5, "s", None, True, b"raw"]})
    assert await cache.get("a") == {"x": [1, 2.5, "s", None, True, b"raw"]}
    await cache.set("a", 2)
    assert await cache.get("a") == 2


async def test_m_get_m_set(cache):
    await cache.m_set({"a": 1, "b": "two"})
    assert await cache.m_get(["a", "b", "missing"]) == {"a": 1, "b": "two"}
    await cache.m_set({"c": 3, "d": 4}, ttl=30)
    assert await cache.m_get(["c", "d"]) == {"c": 3, "d": 4}
    assert await cache.m_get([]) == {}


async def test_exists_and_delete(cache):
    await cache.m_set({"a": 1, "b": 2, "c": 3})
    assert await cache.exists("a")
    assert not await cache.exists("z")
    assert await cache.m_exists(["a", "b", "z"]) == frozenset({"a", "b"})
    await cache.delete("a")
    assert not await cache.exists("a")
    await cache.delete("a")  # deleting a missing key is fine
    await cache.m_delete(["b", "c", "z"])
    assert await cache.m_exists(["a", "b", "c"]) == frozenset()


async def test_ttl_expiry(cache):
    await cache.set("short", 1, ttl=TTL)
    await cache.m_set({"m1": 1, "m2": 2}, ttl=TTL)
    await cache.set("long", 2, ttl=30)
    await cache.set("forever", 3)
    assert await cache.get("short") == 1

    async def expired() -> bool:
        return await cache.m_get(["short", "m1", "m2", "long", "forever"]) == {"long": 2, "forever": 3}

    await eventually(expired, what="the short-lived keys to expire")
    assert not await cache.exists("short")


async def test_default_ttl_setting(make_cache):
    services = make_cache(ttl=TTL)
    async with started(*services):
        cache = services[-1]
        await cache.set("a", 1)
        assert await cache.get("a") == 1

        async def expired() -> bool:
            return await cache.get("a") is None

        await eventually(expired, what="the key to expire after the default ttl")


@pytest.mark.parametrize(
    "value, type_",
    [
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID),
        (datetime(2024, 5, 1, 12, 30, 1, 5, tzinfo=timezone.utc), datetime),
        (datetime(2024, 5, 1, 12, 30, 1), datetime),
        (date(2024, 5, 1), date),
        (Decimal("12.340"), Decimal),
        (
            Item(uuid.uuid4(), Decimal("9.99"), date(2020, 1, 2), datetime.now(timezone.utc), ["a"]),
            Item,
        ),
        ([Item(uuid.uuid4(), Decimal("1"), date(2020, 1, 2), datetime.now(timezone.utc))], list[Item]),
        ({"when": date(2021, 3, 4)}, dict[str, date]),
    ],
)
async def test_typed_round_trip(cache, value, type_):
    await cache.set("v", value)
    back = await cache.get("v", type=type_)
    assert back == value
    assert type(back) is type(value)
    assert await cache.m_get(["v"], type=type_) == {"v": value}


async def test_untyped_values(cache):
    aware = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    value = {"int": -1, "big": 2**60, "float": 0.5, "str": "é", "bytes": b"\x00", "none": None,
             "list": [1, [2]], "when": aware}
    await cache.set("v", value)
    assert await cache.get("v") == value
    # without type=, a UUID comes back as a UUID (a msgpack extension type), not its string
    key = uuid.uuid4()
    await cache.set("u", key)
    assert await cache.get("u") == key


async def test_value_not_fitting_type_is_an_error(cache):
    await cache.set("v", "not a number")
    with pytest.raises(msgspec.ValidationError):
        await cache.get("v", type=int)


async def test_bad_input(cache):
    with pytest.raises(ValueError):
        await cache.set("", 1)
    with pytest.raises(ValueError):
        await cache.get(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await cache.set("a", 1, ttl=0)
    with pytest.raises(TypeError):
        await cache.set("a", object())
    assert await cache.get("a") is None  # a failed set stores nothing


async def test_namespaces_kept_apart(make_cache):
    one, two = make_cache(), make_cache()
    async with started(*one, app=App(name="one", env="test")), started(*two, app=App(name="two", env="test")):
        await one[-1].set("k", 1)
        await two[-1].set("k", 2)
        assert await one[-1].get("k") == 1
        assert await two[-1].get("k") == 2
        await one[-1].delete("k")
        assert await two[-1].get("k") == 2


async def test_shared_namespace(make_cache, backend):
    if backend == "memory":
        pytest.skip("a memory cache is private to its service")
    one, two = make_cache(shared=True), make_cache(shared=True)
    private = make_cache()
    async with (
        started(*one, app=App(name="one", env="test")),
        started(*two, app=App(name="two", env="test")),
        started(*private, app=App(name="one", env="test")),
    ):
        await one[-1].set("k", "shared")
        assert await two[-1].get("k") == "shared"
        assert await private[-1].get("k") is None
        tagged = "k" if backend == "memory" else "{k}"  # a Cluster hash tag on Redis (kaiju.keys)
        assert one[-1].full_key("k") == "test._shared._cache." + tagged
        assert private[-1].full_key("k") == "test.one._cache." + tagged


async def test_memory_lru_eviction(backend):
    if backend != "memory":
        pytest.skip("max_size is a MemoryCache setting")
    from kaiju.cache.memory import MemoryCache

    cache = MemoryCache(max_size=3, cleanup_interval=0)
    async with started(cache):
        await cache.m_set({"a": 1, "b": 2, "c": 3})
        assert await cache.get("a") == 1  # a is now the most recently used
        await cache.set("d", 4)
        assert await cache.m_get(["a", "b", "c", "d"]) == {"a": 1, "c": 3, "d": 4}
        assert len(cache) == 3


async def test_kept_values_are_never_evicted_to_make_room(backend):
    if backend != "memory":
        pytest.skip("max_size is a MemoryCache setting")
    from kaiju.cache.memory import MemoryCache

    cache = MemoryCache(max_size=3, cleanup_interval=0)
    async with started(cache):
        await cache.set("session", "alice's", ttl=60, keep=True)
        await cache.m_set({"lockout.1": 1, "lockout.2": 2}, ttl=60, keep=True)
        for n in range(100):  # a flood of other keys
            await cache.set(f"k{n}", n)
        assert await cache.m_get(["session", "lockout.1", "lockout.2"]) == {"session": "alice's", "lockout.1": 1, "lockout.2": 2}
        assert len(cache) == 3 + 3
        # kept ones still expire and can be deleted; a key written again without keep joins the LRU
        await cache.set("short", 1, ttl=0.05, keep=True)
        await eventually(lambda: _missing(cache, "short"), what="the kept value to expire")
        await cache.delete("lockout.1")
        await cache.set("lockout.2", 2)
        for n in range(100, 110):
            await cache.set(f"k{n}", n)
        assert await cache.m_get(["lockout.1", "lockout.2"]) == {}


async def _missing(cache, key):
    return not await cache.exists(key)


async def test_keep_needs_a_ttl(cache):
    with pytest.raises(ValueError, match="needs a ttl"):
        await cache.set("k", 1, keep=True)


async def test_add_stores_only_a_missing_key_and_one_racer_wins(cache):
    import asyncio

    assert await cache.add("k", "first", ttl=30)
    assert not await cache.add("k", "second", ttl=30)
    assert await cache.get("k") == "first"
    wins = await asyncio.gather(*(cache.add("race", n, ttl=30, keep=True) for n in range(20)))
    assert wins.count(True) == 1 and await cache.get("race") == wins.index(True)
    await cache.delete("k")
    assert await cache.add("k", "again")


async def test_exists_counts_as_a_use_for_the_lru(backend):
    if backend != "memory":
        pytest.skip("max_size is a MemoryCache setting")
    from kaiju.cache.memory import MemoryCache

    cache = MemoryCache(max_size=2, cleanup_interval=0)
    async with started(cache):
        await cache.m_set({"a": 1, "b": 2})
        assert await cache.exists("a")  # "a" is in use: "b" is the least recently used now
        await cache.set("c", 3)
        assert await cache.m_exists(["a", "b", "c"]) == frozenset({"a", "c"})


async def test_memory_periodic_sweep(backend):
    if backend != "memory":
        pytest.skip("the sweep is a MemoryCache feature")
    from kaiju.cache.memory import MemoryCache

    cache = MemoryCache(cleanup_interval=0.05)
    async with started(cache):
        await cache.set("a", 1, ttl=0.05)
        await cache.set("b", 1)
        await eventually(lambda: len(cache) == 1, what="the sweep to drop the expired key unread")


async def test_values_keep_their_types_without_type(cache):
    import datetime
    import decimal
    import uuid

    berlin = datetime.timezone(datetime.timedelta(hours=2))
    value = {
        "id": uuid.UUID(int=7),
        "price": decimal.Decimal("9.90"),
        "day": datetime.date(2026, 11, 26),
        "at": datetime.datetime(2026, 11, 26, 10, 0, tzinfo=berlin),
        "naive": datetime.datetime(2026, 11, 26, 10, 0),
        "tags": {"a", "b"},
        "raw": b"\x00\x01",
        "nested": [{"ids": [uuid.UUID(int=1)]}, (1, 2)],
    }
    await cache.set("typed", value)
    back = await cache.get("typed")
    assert back == {**value, "nested": [{"ids": [uuid.UUID(int=1)]}, [1, 2]]}
    assert back["at"].utcoffset() == datetime.timedelta(hours=2) and type(back["day"]) is datetime.date
    assert await cache.get("typed", type=dict[str, object]) is not None
    await cache.set("ids", [uuid.UUID(int=3)])
    assert await cache.get("ids", type=list[uuid.UUID]) == [uuid.UUID(int=3)]
    await cache.m_set({"one": {1, 2}})
    assert await cache.m_get(["one"]) == {"one": {1, 2}}
