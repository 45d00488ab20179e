"""A stream consumer run as its own process by the crash test.

    python consumer_proc.py REDIS_URL CONSUMER_NAME

Runs `work.item(n)`: waits a little, then RPUSHes n to the Redis list "done" (so every run
of every message, in any process, is counted). Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import sys

from kaiju import rpc
from kaiju.redis import RedisConnection
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import App, Service
from kaiju.streams.listener import StreamListener
from kaiju.streams.redis import RedisStream
from kaiju.streams.service import Streams
from kaiju.testing.services import started


class Work(Service):
    service_name = "work"
    redis: RedisConnection

    async def start(self) -> None:
        pass

    async def stop(self, exception: Exception | None = None) -> None:
        pass

    @rpc.method
    async def item(self, n: int) -> None:
        await asyncio.sleep(0.01)
        await self.redis.client.rpush("done", n)


async def main(url: str, consumer: str) -> None:
    services = [
        RedisConnection(url=url, socket_timeout=3.0),
        RedisStream(),
        Streams(),
        Work(),
        RPCServer(),
        StreamListener(consumer=consumer, batch_size=10, max_parallel_batches=2, block_ms=100, claim_idle_ms=500),
    ]
    async with started(*services, app=App(name="test", env="test")):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
