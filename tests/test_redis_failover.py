"""SIGKILL of the Redis master under load, on Sentinel and on Cluster.

One app holds a lock, serves HTTP requests that use the cache, consumes a topic and
produces into it with `replicas: 1`. The master holding the stream is killed; the test
checks that `/health/ready` names `redis` until a replica took over and is ready again
after, that every HTTP request got an answer (a result or a JSON-RPC error), that the
producers and the listener go on without a restart, and that every message a producer
was told is written was run at least once. Each test has its own servers: a failover
changes a set-up for good (a master gone, a replica promoted).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import pytest

from kaiju import rpc
from kaiju.cache.redis import RedisCache
from kaiju.http.server import HTTPServer
from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.rpc import RPCServer
from kaiju.rpc.access import Scope
from kaiju.runtime.service import App, Service
from kaiju.streams.listener import StreamListener
from kaiju.streams.producer import StreamProducer
from kaiju.streams.redis import RedisStream
from kaiju.streams.service import Streams
from kaiju.testing import eventually
from kaiju.testing.redis import RedisClusterSet, RedisSentinelSet
from kaiju.testing.services import started
from tests.streams.helpers import Recorder

pytestmark = [pytest.mark.failover, pytest.mark.redis]

DOWN_AFTER_MS = 3000  # long enough that a probe sees the outage however busy the machine


class Visits(Service):
    """A guest method that writes and reads the cache: a request that needs Redis."""

    service_name = "visits"
    cache: RedisCache

    @rpc.method(permission=Scope.GUEST)
    async def hit(self, key: str) -> Any:
        await self.cache.set(key, "seen", ttl=60)
        return await self.cache.get(key)


@pytest.fixture
async def servers(request: pytest.FixtureRequest):
    request.getfixturevalue("redis_server")  # skips (or fails) as the other Redis tests do without redis-server
    if request.param == "sentinel":
        # two replicas (per master on a Cluster): the one not promoted follows the new master,
        # so writes with replicas: 1 go on with no node replaced
        made: Any = RedisSentinelSet(replicas=2, down_after_ms=DOWN_AFTER_MS)
    else:
        made = RedisClusterSet(replicas=2, node_timeout_ms=DOWN_AFTER_MS)
    try:
        await asyncio.to_thread(made.start)
        yield made
    finally:
        await asyncio.to_thread(made.cleanup)


def app_services(servers: Any) -> list:
    return [
        # a failover here takes seconds: a command retries at most this long, so none outlives the test
        RedisConnection(**servers.settings, socket_timeout=3.0, failover_timeout=10),
        RedisCache(),
        RedisLocks(),
        RedisStream(replicas=1, replicas_timeout=2.0),
        Streams(),
        Recorder(),
        Visits(),
        RPCServer(),
        StreamListener(name="listener", block_ms=100, claim_idle_ms=300, lock_check_ms=50, consumer="c1"),
        StreamProducer(),
        HTTPServer(port=0),
    ]


def master_of_stream(servers: Any, conn: RedisConnection, stream: str) -> Any:
    """The server process that holds `stream` now."""
    if isinstance(servers, RedisSentinelSet):
        return servers.server(servers.master_port())
    return servers.node(conn.client.get_node_from_key(stream).port)


@pytest.mark.parametrize("servers", ["sentinel", "cluster"], indirect=True)
async def test_sigkill_of_the_master_loses_nothing_acknowledged(servers):
    services = app_services(servers)
    conn, locks, producer, recorder, http = services[0], services[2], services[9], services[5], services[-1]
    listener = services[8]
    async with started(*services, app=App(name="failover", env="test")):
        base = http.url.rsplit("/", 2)[0]
        acked: list[str] = []
        answers: list[dict] = []
        stop = asyncio.Event()

        async def produce(n: int) -> None:
            for i in range(10**6):
                if stop.is_set():
                    return
                value = f"{n}-{i}"
                try:
                    await producer.call("rec.echo", {"value": value})
                except Exception:  # noqa: BLE001 - refused while the master is gone: not acknowledged
                    await asyncio.sleep(0.05)
                else:
                    acked.append(value)

        async def request(client: aiohttp.ClientSession) -> None:
            for i in range(10**6):
                if stop.is_set():
                    return
                body = {"jsonrpc": "2.0", "id": i, "method": "visits.hit", "params": {"key": f"k{i % 50}"}}
                async with client.post(http.url, json=body, headers={"Timeout": "2"}) as response:
                    answers.append(await response.json())

        async def ready(client: aiohttp.ClientSession) -> tuple[int, Any]:
            async with client.get(base + "/health/ready") as response:
                return response.status, await response.json()

        held = await locks.acquire("held", ttl=60)
        timeout = aiohttp.ClientTimeout(total=60)  # far above every request's deadline: a hang fails the test
        async with aiohttp.ClientSession(timeout=timeout) as client:
            load = [asyncio.create_task(produce(n)) for n in range(4)]
            load += [asyncio.create_task(request(client)) for _ in range(2)]
            try:
                await eventually(lambda: len(acked) >= 20 and len(answers) >= 20, timeout=30)
                victim = master_of_stream(servers, conn, listener.stream_key)
                victim.kill()
                acked_at_kill = len(acked)

                async def names_redis() -> bool:
                    status, report = await ready(client)
                    return status == 503 and "redis" in report["failing"]

                await eventually(names_redis, timeout=30, what="/health/ready naming redis")

                async def ready_again() -> bool:
                    return (await ready(client))[0] == 200

                await eventually(ready_again, timeout=60, what="/health/ready 200 after the failover")
                await eventually(lambda: len(acked) >= acked_at_kill + 20, timeout=60, what="producers writing again")
                answered = len(answers)
                await eventually(lambda: len(answers) >= answered + 20, timeout=30)
            finally:
                stop.set()
                for task in load:
                    with contextlib.suppress(Exception):
                        await task
        # every request was answered: a result, or a JSON-RPC error while Redis was away
        assert all(("result" in a) != ("error" in a) for a in answers)
        assert any("error" not in a for a in answers[-20:])
        # every message a producer was told is written ran at least once
        await eventually(lambda: set(acked) <= set(recorder.values()), timeout=60)
        # a lock taken now fences every token handed out before the failover
        after = await locks.acquire("another", ttl=5)
        assert after.token > held.token
