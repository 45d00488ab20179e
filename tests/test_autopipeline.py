"""AutoPipeline: commands issued in one loop iteration share a pipeline, each caller gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from kaiju.lua import LOCK_RELEASE
from kaiju.redis import RedisConnection
from kaiju.testing.services import started


@pytest.fixture
async def conn(redis_url):
    conn = RedisConnection(url=redis_url)
    async with started(conn):
        yield conn


async def test_concurrent_commands_travel_as_one_pipeline(conn):
    batch = conn.batch
    await conn.client.mset({f"k{n}": str(n).encode() for n in range(50)})
    before = dict(batch.counts)
    values = await asyncio.gather(*[batch.execute_command("GET", f"k{n}") for n in range(50)])
    assert values == [str(n).encode() for n in range(50)]
    assert batch.counts["commands"] - before["commands"] == 50
    assert batch.counts["pipelines"] - before["pipelines"] == 1


async def test_a_lone_command_is_a_plain_command(conn):
    before = dict(conn.batch.counts)
    assert await conn.batch.execute_command("SET", "k", b"v", "PX", 10_000) is True
    assert await conn.batch.execute_command("GET", "k") == b"v"
    assert conn.batch.counts["pipelines"] == before["pipelines"]


async def test_an_error_fails_only_its_caller(conn):
    from redis.exceptions import ResponseError

    await conn.client.set("text", b"abc")
    ok, bad, also_ok = await asyncio.gather(
        conn.batch.execute_command("INCR", "n"),
        conn.batch.execute_command("INCR", "text"),
        conn.batch.execute_command("INCR", "n"),
        return_exceptions=True,
    )
    assert (ok, also_ok) == (1, 2)
    assert isinstance(bad, ResponseError)


async def test_each_caller_keeps_its_order(conn):
    async def worker(n: int) -> list[bytes]:
        seen = []
        for step in range(20):
            await conn.batch.execute_command("SET", f"w{n}", str(step).encode())
            seen.append(await conn.batch.execute_command("GET", f"w{n}"))
        return seen

    results = await asyncio.gather(*[worker(n) for n in range(10)])
    assert all(seen == [str(step).encode() for step in range(20)] for seen in results)
    assert conn.batch.counts["pipelines"] > 0


async def test_a_cancelled_caller_leaves_the_others_their_results(conn):
    await conn.client.set("k", b"v")
    first = asyncio.ensure_future(conn.batch.execute_command("GET", "k"))
    second = conn.batch.execute_command("GET", "k")
    third = conn.batch.execute_command("GET", "k")
    second.cancel()
    assert await first == b"v" and await third == b"v"
    assert second.cancelled()


async def test_scripts_are_loaded_when_the_server_lacks_them(conn):
    await conn.client.set("lock", b"me")
    await conn.client.script_flush()
    assert await conn.batch.run_script(LOCK_RELEASE, ["lock"], ["me"]) == 1
    await conn.client.script_flush()  # e.g. a new master after a failover
    assert await conn.batch.run_script(LOCK_RELEASE, ["lock"], ["me"]) == 0


async def test_a_broken_connection_fails_every_caller_of_the_pipeline(redis_server):
    from redis.exceptions import ConnectionError as RedisConnectionError

    conn = RedisConnection(url=redis_server.url, retries=0)
    async with started(conn):
        redis_server.stop()
        try:
            outcomes = await asyncio.gather(
                *[conn.batch.execute_command("GET", f"k{n}") for n in range(3)], return_exceptions=True
            )
        finally:
            redis_server.start()
    assert all(isinstance(outcome, (RedisConnectionError, OSError)) for outcome in outcomes)


async def test_stop_sends_what_is_queued_first(redis_url):
    conn = RedisConnection(url=redis_url)
    async with started(conn):
        writes = [conn.batch.execute_command("SET", f"q{n}", b"x") for n in range(5)]
    assert [write.result() for write in writes] == [True] * 5


async def test_a_command_close_gives_up_on_fails_its_caller_with_an_error(conn):
    blocked = conn.batch.execute_command("BLPOP", "never-filled", 0)  # no reply ever comes
    await conn.batch.close(timeout=0.05)  # gives up on it: cancels what is on its way
    assert blocked.done() and isinstance(blocked.exception(), ConnectionError), blocked


async def test_concurrent_waits_share_one_wait_at_the_end_of_the_pipeline(conn):
    before = dict(conn.batch.counts)
    writes = [conn.batch.execute_command("SET", f"w{n}", b"x") for n in range(3)]
    waits = [conn.batch.wait_replicas(0, 100) for _ in range(3)]
    assert await asyncio.gather(*writes) == [True] * 3
    assert await asyncio.gather(*waits) == [0, 0, 0]  # no replica on the test server
    assert conn.batch.counts["commands"] - before["commands"] == 4  # three SETs, one WAIT


async def test_a_cancelled_waiter_leaves_the_others_their_wait(conn):
    first, second = conn.batch.wait_replicas(0, 100), conn.batch.wait_replicas(0, 100)
    first.cancel()
    assert await second == 0
