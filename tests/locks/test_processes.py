"""Redis locks between real processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kaiju.locks.base import LockExistsError, LockLostError
from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.testing.services import started

WORKER = str(Path(__file__).with_name("lock_worker.py"))


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, text=True)


async def test_two_processes_exclude_each_other(redis_url):
    rounds = 40
    procs = [spawn(redis_url, "count", str(rounds)) for _ in range(2)]
    outputs = []
    try:
        for proc in procs:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            assert proc.returncode == 0
            outputs.append([int(t) for t in out.split()])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    async with started(RedisConnection(url=redis_url)) as app:
        counter = int(await app.services["redis"].client.get("counter"))
    # every read-modify-write ran alone: no increment was lost
    assert counter == 2 * rounds
    tokens = outputs[0] + outputs[1]
    assert len(set(tokens)) == 2 * rounds
    for out in outputs:
        assert out == sorted(out)


async def test_killed_holder_frees_lock_after_ttl(redis_url):
    proc = spawn(redis_url, "hold", "1.5")  # room for the holder's renewals on a loaded machine
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == "held"
        async with started(RedisConnection(url=redis_url), RedisLocks()) as app:
            locks = app.services["locks"]
            with pytest.raises(LockExistsError):
                await locks.acquire("held", ttl=5, wait=False)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            # no release came from the dead holder: the lock goes when its TTL runs out
            info = await locks.acquire("held", ttl=5, timeout=10)
            assert await locks.owner("held") == info.id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_live_holder_in_other_process_keeps_lock_past_ttl(redis_url):
    proc = spawn(redis_url, "hold", "1.5")  # renewed every 0.5 s: a delayed renewal still has 1 s
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == "held"
        async with started(RedisConnection(url=redis_url), RedisLocks()) as app:
            locks = app.services["locks"]
            await asyncio.sleep(3.5)  # past two TTLs: only renewal keeps it
            with pytest.raises(LockExistsError):
                await locks.acquire("held", ttl=5, wait=False)
    finally:
        proc.kill()
        proc.wait()


async def test_locks_work_after_redis_restart(redis_server, redis_url):
    async with started(RedisConnection(url=redis_url), RedisLocks()) as app:
        locks = app.services["locks"]
        info = await locks.acquire("r", ttl=30, renew=False)
        # the test server keeps its data (appendonly) but forgets its scripts and connections
        await asyncio.to_thread(redis_server.restart)
        assert await locks.owner("r") == info.id
        await locks.release("r", info.id)
        again = await locks.acquire("r", ttl=30, renew=False)
        assert again.token > info.token


async def test_acquire_retried_under_same_id_returns_a_token(redis_url):
    # what a command retry after a lost reply does: run the acquire script twice with one id
    async with started(RedisConnection(url=redis_url), RedisLocks()) as app:
        locks = app.services["locks"]
        key = locks.full_key("retry")
        first = await locks._acquire(key, "me:1", 5, False, None)
        assert await locks._acquire(key, "me:1", 5, False, None) == first
        with pytest.raises(LockExistsError):
            await locks._acquire(key, "other:1", 5, False, None)


async def test_lock_lost_when_redis_goes_away(redis_server, redis_url):
    async with started(RedisConnection(url=redis_url, retries=1, connect_timeout=0.5), RedisLocks()) as app:
        locks = app.services["locks"]
        try:
            with pytest.raises(LockLostError):
                async with locks.lock("gone", ttl=0.3):
                    await asyncio.to_thread(redis_server.stop)
                    # renewals fail until the TTL has passed: the block is cancelled
                    await asyncio.wait_for(asyncio.Event().wait(), 10)
        finally:
            await asyncio.to_thread(redis_server.start)
