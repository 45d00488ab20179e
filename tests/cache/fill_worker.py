"""A process filling one cache key (run by tests/cache/test_processes.py).

    python fill_worker.py URL N    N concurrent get_or_set of one key; the loader counts
                                   its calls in Redis (key "loads"); prints the values seen
"""

from __future__ import annotations

import asyncio
import sys

from kaiju.cache.redis import RedisCache
from kaiju.redis import RedisConnection
from kaiju.testing.services import started


async def main(url: str, n: str) -> None:
    conn, cache = RedisConnection(url=url), RedisCache()
    async with started(conn, cache):

        async def loader() -> str:
            await conn.client.incr("loads")
            await asyncio.sleep(0.3)  # slow enough for the other process to miss too
            return "filled"

        print("ready", flush=True)
        await conn.client.blpop(["go"], timeout=30)  # start together with the other process
        values = await asyncio.gather(*(cache.get_or_set("k", loader, ttl=30) for _ in range(int(n))))
        print(" ".join(sorted(set(values))), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
