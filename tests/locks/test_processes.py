"""Redis locks between real processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kaiju.locks.base import LockExistsError
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
    for proc in procs:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0
        outputs.append([int(t) for t in out.split()])
    async with started(RedisConnection(url=redis_url)) as app:
        counter = int(await app.services["redis"].client.get("counter"))
    # every read-modify-write ran alone: no increment was lost
    assert counter == 2 * rounds
    tokens = outputs[0] + outputs[1]
    assert len(set(tokens)) == 2 * rounds
    for out in outputs:
        assert out == sorted(out)


async def test_killed_holder_frees_lock_after_ttl(redis_url):
    proc = spawn(redis_url, "hold", "0.5")
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
    proc = spawn(redis_url, "hold", "0.3")
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == "held"
        async with started(RedisConnection(url=redis_url), RedisLocks()) as app:
            locks = app.services["locks"]
            await asyncio.sleep(1.0)  # over three TTLs: only renewal keeps it
            with pytest.raises(LockExistsError):
                await locks.acquire("held", ttl=5, wait=False)
    finally:
        proc.kill()
        proc.wait()
