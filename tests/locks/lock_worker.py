"""A process competing for a Redis lock (run by tests/locks/test_processes.py).

    python lock_worker.py URL count N     take the lock N times, each time a non-atomic
                                          read-sleep-write of a counter; print the tokens
    python lock_worker.py URL hold TTL    take the lock, print "held", sleep until killed
"""

from __future__ import annotations

import asyncio
import sys

from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.testing.services import started


async def main(url: str, mode: str, arg: str) -> None:
    conn = RedisConnection(url=url)
    locks = RedisLocks()
    async with started(conn, locks):
        client = conn.client
        if mode == "count":
            tokens = []
            for _ in range(int(arg)):
                async with locks.lock("shared", ttl=2, timeout=20) as info:
                    value = int(await client.get("counter") or 0)
                    await asyncio.sleep(0.001)  # let the other process in, were it not for the lock
                    await client.set("counter", value + 1)
                    tokens.append(info.token)
            print(" ".join(map(str, tokens)), flush=True)
        elif mode == "hold":
            await locks.acquire("held", ttl=float(arg))
            print("held", flush=True)
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
