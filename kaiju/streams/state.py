"""`ListenerState`: the run-time state of one started `StreamListener`, shared by its parts.

Made in the listener's `start()` and dropped in its `stop()`: where it reads (stream, group,
consumer, backend), its counters, the messages in hand and the batches running, the slots
batches take, the pause on the topic lock, the ack hand-over (`kaiju.streams.acks`) and the
backoff after a lost server. The reader (`reader.py`), the batch runner (`batches.py`) and
the upkeep (`upkeep.py`) each read and change it; none of them holds state of its own.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from kaiju.streams.acks import AckHandover
from kaiju.streams.base import GroupInfo, StreamBackend, StreamError

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.streams.listener import StreamListener

__all__ = ["Backoff", "ListenerState"]


class Backoff:
    """Growing, jittered pauses between attempts to reach a lost server."""

    def __init__(self, first: float = 0.05, limit: float = 5.0):
        self.first, self.limit, self.current = first, limit, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.limit)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.current = self.first


class ListenerState:
    """What one started listener holds. `settings` is the listener itself, read only (its
    settings are trusted: the plan validated them)."""

    def __init__(
        self,
        settings: StreamListener,
        backend: StreamBackend,
        stream_key: str,
        group: str,
        consumer: str,
        counters: dict[str, int],
    ):
        self.settings = settings
        self.logger = settings.logger
        self.backend = backend
        self.stream_key = stream_key
        self.group = group
        self.consumer = consumer
        self.counters = counters  # the listener's: processed, failed, dead_lettered, claimed
        self.backlog: GroupInfo | None = None  # the group's length, pending and lag, as last read
        self.running = True
        self.reading = False  # the reader is in a call to the backend (stop() lets it finish)
        self.paused = False  # the topic is locked
        self.parked = False  # ... and the reader waits for it to be unlocked
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        self.lock_recheck = asyncio.Event()  # check the topic lock now
        # batches in flight, the read's included: as many messages run at once
        self.slots = asyncio.Semaphore(settings.max_concurrency or settings.max_parallel_batches)
        # deliveries a message gets: one more than the delays of `retry_delays`, else `max_deliveries`
        delays = settings.retry_delays
        self.max_deliveries = len(delays) + 1 if delays is not None else settings.max_deliveries
        self.retry_on = frozenset(settings.retry_on) if settings.retry_on is not None else None
        self.in_hand: dict[str, float] = {}  # message id -> when it was taken or last kept fresh (monotonic)
        self.batches: set[asyncio.Task] = set()
        self.acks = AckHandover()
        self.backoff = Backoff()
        # how often idle messages are looked for, and in-hand ones kept fresh
        self.claim_every = min(max(settings.claim_idle_ms / 4000, 0.02), 5.0)

    def set_paused(self, paused: bool) -> None:
        """Pause or resume reading (the topic lock was taken or released)."""
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self.unpaused.clear()
            self.logger.info("topic locked: pausing", stream=self.stream_key)
        else:
            self.unpaused.set()
            self.logger.info("topic unlocked: resuming", stream=self.stream_key)

    async def wait_for_server(self, exc: Exception) -> None:
        """Back off after the server could not be reached (a growing, jittered pause)."""
        delay = self.backoff.next()
        self.logger.warning("stream server unavailable, retrying", error=str(exc), retry_in=round(delay, 3))
        await asyncio.sleep(delay)

    async def recreate_group(self) -> None:
        """The group is gone (the server lost its data): create it again."""
        self.logger.warning("group missing, creating it again", group=self.group, stream=self.stream_key)
        try:
            await self.backend.create_group(self.stream_key, self.group)
        except StreamError as exc:
            await self.wait_for_server(exc)

    def stop(self) -> None:
        """Stop reading and waiting: stop() of the listener is under way."""
        self.running = False
        self.unpaused.set()
        self.lock_recheck.set()

    def __repr__(self) -> str:
        return f"<ListenerState {self.stream_key} group={self.group} consumer={self.consumer}>"
