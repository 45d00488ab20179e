"""RedisCache between real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from kaiju.redis import RedisConnection
from kaiju.testing.services import started

WORKER = str(Path(__file__).with_name("fill_worker.py"))


async def test_two_processes_fill_a_key_once(redis_url):
    procs = [
        subprocess.Popen([sys.executable, WORKER, redis_url, "300"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    conn = RedisConnection(url=redis_url)
    try:
        await check(conn, procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def check(conn, procs):
    async with started(conn):
        for proc in procs:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.strip() == "ready"
        await conn.client.rpush("go", 1, 1)
        for proc in procs:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            assert proc.returncode == 0
            assert out.strip() == "filled"
        assert int(await conn.client.get("loads")) == 1
