"""`RedisEvents`: events carried to every process of the app over one Redis pub/sub channel.

    PUBLISH <namespace>._events <message>     publish / revoke (one command, no key)
    SUBSCRIBE <namespace>._events             one connection per process, held by a reader task

Pub/sub delivers at most once, in the order Redis received the messages: a process that is
disconnected misses what was published meanwhile. Events are meant for live screens, which
reload what they show after a reconnect; for revocation notices, a reconnect makes every
listener distrust what it cached (`EventListener.resync`), so a logout missed meanwhile
still ends a socket's rights at its next message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kaiju import keys
from kaiju.events.base import Events
from kaiju.redis import RedisConnection
from kaiju.runtime.types import Positive

__all__ = ["RedisEvents"]


class RedisEvents(Events):
    """Events shared by every process connected to the same Redis (service name "events").

    The settings are documented where each is declared, below. Dependency: `redis` (a
    `RedisConnection`).
    """

    redis: RedisConnection
    """The connection the channel is read and written through."""

    reconnect_delay: Positive = 1.0
    """Seconds between attempts to subscribe again after the channel broke."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.reader: asyncio.Task | None = None
        self.subscribed = asyncio.Event()  # set while this process hears the channel (a probe for tests)

    @property
    def channel(self) -> str:
        """The app's channel: `<env>.<app>._events`."""
        return self.app.namespace.get_key(keys.EVENTS)

    async def start(self) -> None:
        await super().start()
        pubsub = await self._subscribe()  # the first subscription fails the start when Redis is down
        self.reader = asyncio.get_running_loop().create_task(self._read(pubsub), name=f"{self.name}.reader")

    async def stop(self, exception: Exception | None = None) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
            self.reader = None
        await super().stop(exception)

    async def carry(self, message: bytes) -> None:
        await self.redis.publish(self.channel, message)

    spread = carry  # a notice this process heard already reaches the others (and comes back: heard twice, harmless)

    async def _subscribe(self) -> Any:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
        except BaseException:
            await pubsub.aclose()
            raise
        self.subscribed.set()
        return pubsub

    async def _read(self, pubsub: Any) -> None:
        """Hear the channel until stopped; after a break, subscribe again and resync the listeners."""
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.hear(message["data"])
            except asyncio.CancelledError:
                await asyncio.shield(pubsub.aclose())
                raise
            except Exception as exc:  # the connection broke: events of the gap are lost, notices too
                self.subscribed.clear()
                self.logger.warning("event channel lost; subscribing again", error=str(exc))
                await pubsub.aclose()
            pubsub = await self._resubscribe()
            self.resync()

    async def _resubscribe(self) -> Any:
        while True:
            await asyncio.sleep(self.reconnect_delay)
            try:
                return await self._subscribe()
            except Exception as exc:
                self.logger.warning("event channel still unavailable", error=str(exc))
