"""Crashes: a consumer killed with SIGKILL mid-batch, and a Redis restart during consumption.

The kill test needs two processes, so it runs on Redis only. On the memory backend (one
process) the same recovery path, a pending message claimed by another consumer, is covered
by `test_listener.py::test_graceful_stop_acknowledges_only_processed_messages`, where the
first consumer stops with messages in hand and a second one claims them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from kaiju.redis import RedisConnection
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import App
from kaiju.streams.listener import StreamListener
from kaiju.streams.producer import StreamProducer
from kaiju.streams.redis import RedisStream
from kaiju.streams.service import Streams
from kaiju.testing.services import started
from tests.streams.helpers import Recorder, until

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
N = 300


async def test_sigkill_mid_batch_loses_nothing(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("consumer_proc.py")), redis_url, "victim"],
        stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline), 20)
        assert line.strip() == b"ready", line
        services = [RedisConnection(url=redis_url), RedisStream(), StreamProducer()]
        async with started(*services, app=App(name="test", env="test")):
            producer = services[-1]
            for n in range(N):
                await producer.call("work.item", {"n": n})
            stream = producer.stream_key()
            for _ in range(500):  # bounded: wait until the victim is mid-way
                if await client.llen("done") >= N // 4:
                    break
                await asyncio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            before = len(await client.lrange("done", 0, -1))
            pending = (await client.xpending(stream, "test"))["pending"]
            assert 0 < before < N and pending > 0, (before, pending)

            # a survivor in this process, running the same method, claims what the victim held
            from tests.streams.consumer_proc import Work

            survivor = [RedisConnection(url=redis_url), RedisStream(), Streams(), Work(), RPCServer(),
                        StreamListener(consumer="survivor", block_ms=100, claim_idle_ms=500)]
            async with started(*survivor, app=App(name="test", env="test")):
                listener = survivor[-1]
                for _ in range(1500):
                    runs = [int(x) for x in await client.lrange("done", 0, -1)]
                    if set(runs) == set(range(N)) and (await client.xpending(stream, "test"))["pending"] == 0:
                        break
                    await asyncio.sleep(0.02)
                missing = set(range(N)) - set(runs)
                duplicates = len(runs) - len(set(runs))
                print(f"\nSIGKILL test: {N} messages; victim ran {before} before the kill with {pending} pending; "
                      f"survivor claimed {listener.counters['claimed']}, ran {len(runs) - before}; "
                      f"missing {len(missing)}; run twice {duplicates}")
                assert not missing, f"lost messages: {sorted(missing)[:20]}"
                assert listener.counters["claimed"] >= 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await client.aclose()


async def test_redis_restart_during_consumption_loses_nothing(redis_server, redis_url: str) -> None:
    rec = Recorder(delay=0.005)
    services = [RedisConnection(url=redis_url, socket_timeout=3.0), RedisStream(), Streams(), rec, RPCServer(),
                StreamListener(consumer="c1", block_ms=100, claim_idle_ms=500, batch_size=10), StreamProducer()]
    async with started(*services, app=App(name="test", env="test")):
        listener, producer = services[-2], services[-1]
        for n in range(N):
            await producer.call("rec.echo", {"value": n})
        await until(lambda: len(rec.calls) >= N // 4, what="consumption under way")
        await asyncio.get_running_loop().run_in_executor(None, redis_server.restart)
        await until(lambda: set(rec.values()) == set(range(N)), timeout=30, what="every message after the restart")
        await until(lambda: listener.counters["processed"] >= N and not listener.in_hand, timeout=10, what="acks")
        print(f"\nRedis restart: {N} messages, {len(set(rec.values()))} run, {len(rec.values()) - N} run twice")
        for _ in range(100):  # a pooled connection broken by the restart may fail one status call
            status = await listener.status()
            if "error" not in status:
                break
            await asyncio.sleep(0.05)
        assert status["pending"] == 0 and status["lag"] == 0, status
