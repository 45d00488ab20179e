"""The backend interface, against both backends: groups, acks, redelivery, dead letters, safe trim."""

from __future__ import annotations

import asyncio
import time

import msgspec

from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.streams.base import GroupMissing, StreamBackend

import pytest

S = "{test.test._stream.t}"


async def test_add_and_read_new_round_trip(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    await backend.create_group(S, "g")  # idempotent
    first = await backend.add(S, b'{"a":1}', {"Correlation-Id": "c1"}, key="k1")
    await backend.add(S, b'{"a":2}')
    got = await backend.read_new(S, "g", "c", 10, 50)
    assert [m.id for m in got][0] == first
    assert [(m.body, m.headers, m.key, m.deliveries) for m in got] == [
        (b'{"a":1}', {"Correlation-Id": "c1"}, "k1", 1),
        (b'{"a":2}', {}, None, 1),
    ]
    assert await backend.read_new(S, "g", "c", 10, 20) == []


async def test_group_reads_history_written_before_it_existed(backend: StreamBackend) -> None:
    await backend.add(S, b"early")
    await backend.create_group(S, "g")
    assert [m.body for m in await backend.read_new(S, "g", "c", 10, 0)] == [b"early"]


async def test_blocking_read_wakes_on_add(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    reader = asyncio.ensure_future(backend.read_new(S, "g", "c", 10, 2000))
    await asyncio.sleep(0.05)
    await backend.add(S, b"x")
    got = await asyncio.wait_for(reader, 5)
    assert [m.body for m in got] == [b"x"]


async def test_unacked_messages_are_pending_and_reread_with_counts(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    for i in range(3):
        await backend.add(S, str(i).encode())
    got = await backend.read_new(S, "g", "c", 10, 0)
    assert await backend.ack(S, "g", [got[1].id]) == 1
    info = await backend.group_info(S, "g")
    assert (info.length, info.pending, info.lag) == (3, 2, 0)
    again = await backend.read_pending(S, "g", "c", 10)
    assert [(m.body, m.deliveries) for m in again] == [(b"0", 2), (b"2", 2)]
    assert await backend.read_pending(S, "g", "other", 10) == []
    assert [m.body for m in await backend.read_pending(S, "g", "c", 10, after_id=again[0].id)] == [b"2"]


async def test_idle_messages_are_claimed_by_another_consumer(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    for i in range(3):
        await backend.add(S, str(i).encode())
    await backend.read_new(S, "g", "dead", 10, 0)
    nxt, claimed = await backend.claim_idle(S, "g", "live", 60_000, 10)
    assert claimed == []
    await asyncio.sleep(0.05)
    nxt, claimed = await backend.claim_idle(S, "g", "live", 20, 2)
    assert [(m.body, m.deliveries) for m in claimed] == [(b"0", 2), (b"1", 2)]
    assert nxt != "0-0"
    nxt, claimed = await backend.claim_idle(S, "g", "live", 20, 2, start_id=nxt)
    assert [m.body for m in claimed] == [b"2"] and nxt == "0-0"
    assert len(await backend.read_pending(S, "g", "live", 10)) == 3
    assert await backend.read_pending(S, "g", "dead", 10) == []


async def test_touch_keeps_a_message_from_being_claimed(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    await backend.add(S, b"slow")
    (msg,) = await backend.read_new(S, "g", "c", 10, 0)
    handed_back = 0
    for _ in range(5):
        await asyncio.sleep(0.3)  # idle past the claim's 250 ms: claimable, but for the touch
        touched = time.monotonic()
        await backend.touch(S, "g", "c", [msg.id])
        _, claimed = await backend.claim_idle(S, "g", "thief", 250, 10)
        if time.monotonic() - touched < 0.2:
            break  # the claim came well within 250 ms of the touch: only the touch can explain a miss
        if claimed:  # the machine stalled past 250 ms: a fair claim; hand it back and try again
            await backend.claim_idle(S, "g", "c", 0, 10)
            handed_back += 1
    else:
        raise AssertionError("the machine was too busy to run a touch and a claim within 200 ms")
    assert claimed == []
    (again,) = await backend.read_pending(S, "g", "c", 10)
    assert again.deliveries == 2 + 2 * handed_back  # touch did not count as a delivery; the re-read did


async def test_touch_does_not_take_back_a_message_claimed_by_another(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    await backend.add(S, b"slow")
    (msg,) = await backend.read_new(S, "g", "c", 10, 0)
    await asyncio.sleep(0.05)
    _, claimed = await backend.claim_idle(S, "g", "thief", 20, 10)
    assert [m.id for m in claimed] == [msg.id]
    await backend.touch(S, "g", "c", [msg.id])  # c still thinks it holds it
    assert [m.id for m in await backend.read_pending(S, "g", "thief", 10)] == [msg.id]
    assert await backend.read_pending(S, "g", "c", 10) == []


async def test_dead_letter_copies_and_acks(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    await backend.add(S, b"poison", {"Correlation-Id": "p"})
    (msg,) = await backend.read_new(S, "g", "c", 10, 0)
    await backend.dead_letter(S, "g", "c", msg, {"type": "Boom", "message": "no"})
    assert (await backend.group_info(S, "g")).pending == 0
    ((dead_id, fields),) = await backend.read_range(S + DEAD_LETTER_SUFFIX)
    assert fields["b"] == b"poison"
    info = msgspec.json.decode(fields["x"])
    assert info["id"] == msg.id and info["error"]["type"] == "Boom" and info["group"] == "g"


async def test_trim_never_drops_pending_or_unread(backend: StreamBackend) -> None:
    await backend.create_group(S, "slow")
    await backend.create_group(S, "fast")
    ids = [await backend.add(S, str(i).encode()) for i in range(400)]
    fast = await backend.read_new(S, "fast", "c", 400, 0)
    await backend.ack(S, "fast", [m.id for m in fast])
    slow = await backend.read_new(S, "slow", "c", 300, 0)
    await backend.ack(S, "slow", [m.id for m in slow[:250]])  # 250..299 pending, 300..399 unread
    await backend.trim(S, 10)
    remaining = [i for i, _ in await backend.read_range(S, 1000)]
    assert ids[250:] == remaining[-150:], "a pending or unread entry was trimmed"
    assert len(remaining) < 400 or backend.__class__.__name__ == "RedisStream"
    await backend.ack(S, "slow", [m.id for m in slow[250:]])
    rest = await backend.read_new(S, "slow", "c", 1000, 0)
    assert [m.body for m in rest] == [str(i).encode() for i in range(300, 400)]


async def test_trim_removes_consumed_entries(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    for _ in range(1000):
        await backend.add(S, b"x")
    got = await backend.read_new(S, "g", "c", 1000, 0)
    await backend.ack(S, "g", [m.id for m in got])
    await backend.trim(S, 100)
    assert 100 <= await backend.length(S) < 1000


async def test_missing_group_is_reported(backend: StreamBackend) -> None:
    with pytest.raises(GroupMissing):
        await backend.read_new(S, "nope", "c", 1, 0)
    await backend.add(S, b"x")
    with pytest.raises(GroupMissing):
        await backend.ack_and_read_new(S, "nope", "c", ["1-0"], 1, 0)


async def test_ack_and_read_new_acknowledges_then_reads(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    for i in range(4):
        await backend.add(S, str(i).encode())
    first = await backend.read_new(S, "g", "c", 2, 0)
    second = await backend.ack_and_read_new(S, "g", "c", [m.id for m in first], 10, 0)
    assert [m.body for m in second] == [b"2", b"3"]
    info = await backend.group_info(S, "g")
    assert (info.pending, info.lag) == (2, 0)  # the first two acknowledged, the last two in hand
    assert [m.body for m in await backend.read_pending(S, "g", "c", 10)] == [b"2", b"3"]
    # the acknowledgement lands before the read waits: nothing new here, so it blocks briefly
    assert await backend.ack_and_read_new(S, "g", "c", [m.id for m in second], 10, 20) == []
    assert (await backend.group_info(S, "g")).pending == 0


async def test_prune_forgets_only_idle_consumers_with_nothing_pending(backend: StreamBackend) -> None:
    await backend.create_group(S, "g")
    await backend.add(S, b"1")
    await backend.add(S, b"2")
    (m1,) = await backend.read_new(S, "g", "holder", 1, 0)
    (m2,) = await backend.read_new(S, "g", "done", 1, 0)
    await backend.ack(S, "g", [m2.id])
    await asyncio.sleep(0.05)
    pruned = await backend.prune_consumers(S, "g", 20)
    if backend.__class__.__name__ == "MemoryStream":
        assert pruned == 0  # consumers are not tracked apart from their pending messages
    else:
        assert pruned == 1
        client = backend.redis.client
        assert [c["name"] for c in await client.xinfo_consumers(S, "g")] == [b"holder"]
    assert [m.id for m in await backend.read_pending(S, "g", "holder", 10)] == [m1.id]


async def test_memory_drops_what_every_group_has_acknowledged(backend: StreamBackend) -> None:
    if backend.__class__.__name__ != "MemoryStream":
        pytest.skip("Redis keeps entries until trimmed (maxlen)")
    await backend.create_group(S, "a")
    await backend.create_group(S, "b")
    for i in range(3000):
        await backend.add(S, str(i).encode())
    held = await backend.read_new(S, "b", "c", 1, 0)  # b holds the first one, unacknowledged
    for _ in range(30):
        got = await backend.read_new(S, "a", "c", 100, 0)
        await backend.ack(S, "a", [m.id for m in got])
    assert await backend.length(S) == 3000, "an entry group b still needs was dropped"
    await backend.ack(S, "b", [held[0].id])
    rest = await backend.read_new(S, "b", "c", 3000, 0)
    await backend.ack(S, "b", [m.id for m in rest])
    assert await backend.length(S) < 1024  # nothing any group needs: kept no longer
    await backend.add(S, b"new")
    assert [m.body for m in await backend.read_new(S, "a", "c", 10, 0)] == [b"new"]


async def test_a_socket_timeout_within_the_block_margin_is_refused(redis_url: str) -> None:
    from kaiju.redis import RedisConnection
    from kaiju.runtime.service import App
    from kaiju.streams.redis import RedisStream
    from kaiju.testing.services import started

    with pytest.raises(ValueError, match="socket_timeout"):
        async with started(RedisConnection(url=redis_url, socket_timeout=0.5), RedisStream(), app=App()):
            pass
    async with started(RedisConnection(url=redis_url, socket_timeout=0.6), RedisStream(), app=App()):
        pass  # 100 ms of blocking read left: accepted
