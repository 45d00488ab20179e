"""RedisLocks where the network comes between a command and its answer."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.testing import eventually
from kaiju.testing.services import started


class HoldingProxy:
    """A TCP proxy to a Redis server that, once armed, holds back the server's next answer
    until `let_go()`: the command has run on the server, and its caller has not heard back."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.armed = False
        self.held = asyncio.Event()  # an answer is held back
        self.gate = asyncio.Event()
        self.connections: set[asyncio.Task] = set()

    async def start(self) -> str:
        """Listen on a free port; the Redis URL to connect through the proxy."""
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def close(self) -> None:
        """Stop listening and end the connections it carries (none is left pending at the loop's end)."""
        self.server.close()
        for task in self.connections:
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)

    def arm(self) -> None:
        self.armed = True

    def let_go(self) -> None:
        self.gate.set()

    async def _connect(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(
                self._pipe(client_reader, server_writer, hold=False),
                self._pipe(server_reader, client_writer, hold=True),
                return_exceptions=True,
            )
        finally:
            self.connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: bool) -> None:
        try:
            while data := await reader.read(65536):
                if hold and self.armed:
                    self.armed = False
                    self.held.set()
                    await self.gate.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def test_a_cancelled_acquire_whose_script_ran_leaves_no_lock(redis_url):
    proxy = HoldingProxy(urlsplit(redis_url).port)
    locks = RedisLocks()
    async with started(RedisConnection(url=await proxy.start()), locks):
        warm = await locks.acquire("warm", ttl=30)  # the server knows the scripts from here on
        await locks.release("warm", warm.id)
        proxy.arm()
        taking = asyncio.create_task(locks.acquire("k", ttl=30))
        await eventually(proxy.held.is_set, what="the acquire's script to have run on the server")
        taking.cancel()  # the caller is gone before it hears that it holds the lock
        proxy.let_go()
        with pytest.raises(asyncio.CancelledError):
            await taking

        async def free() -> bool:
            return await locks.owner("k") is None

        await eventually(free, what="the lock nobody holds any more to be released")  # not after its TTL
    await proxy.close()
