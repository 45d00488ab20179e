"""The upkeep of a `StreamListener`: one task beside the reader for what is not reading.

- the topic lock: checked every `lock_check_ms` (and at once when `Streams` says it
  changed); a locked topic pauses the reader (`ListenerState.set_paused`);
- the backlog: the group's pending count and lag, read with each lock check, for the metrics;
- messages in hand: their idle time is reset (`touch`) every `claim_every`, before it
  reaches half of `claim_idle_ms`, so that no other consumer claims a message still running;
- consumers gone quiet (dead processes' names) are forgotten after an hour, or ten claim
  periods when those are longer;
- trimming to `maxlen`, at most once a second and only after new messages were processed.

Failures back off as the reader's do; the loop never ends on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from kaiju.streams.base import GroupMissing, StreamError
from kaiju.streams.state import ListenerState

__all__ = ["Upkeep"]


class Upkeep:
    """The upkeep of one listener; `topic_locked(stream)` asks the `Streams` service."""

    def __init__(self, state: ListenerState, topic_locked: Callable[[str], Awaitable[bool]]):
        self.state = state
        self.topic_locked = topic_locked

    async def run(self) -> None:
        """Keep up until the listener stops."""
        s = self.state
        claim_every = s.claim_every
        lock_every = s.settings.lock_check_ms / 1000
        next_claim = next_lock = time.monotonic()
        prune_every = max(3600.0, s.settings.claim_idle_ms / 100)
        next_prune = next_claim + prune_every
        last_trim, trimmed_at = 0.0, 0  # trim only after new messages were processed
        while s.running:
            with contextlib.suppress(TimeoutError):  # the next tick is due
                await asyncio.wait_for(s.lock_recheck.wait(), max(min(next_claim, next_lock) - time.monotonic(), 0))
            if not s.running:
                return
            try:
                now = time.monotonic()
                if s.lock_recheck.is_set() or now >= next_lock:
                    s.lock_recheck.clear()
                    next_lock = now + lock_every
                    s.set_paused(await self.topic_locked(s.stream_key))
                    s.backlog = await s.backend.group_info(s.stream_key, s.group)
                if now >= next_claim:
                    next_claim = now + claim_every
                    await self._touch_in_hand(now)
                    if now >= next_prune:
                        next_prune = now + prune_every
                        await s.backend.prune_consumers(s.stream_key, s.group, int(prune_every * 1000))
                    maxlen = s.settings.maxlen
                    if maxlen and s.counters["processed"] != trimmed_at and now - last_trim >= 1.0:
                        trimmed_at, last_trim = s.counters["processed"], now
                        await s.backend.trim(s.stream_key, maxlen)
            except asyncio.CancelledError:
                raise
            except GroupMissing:
                await s.recreate_group()
            except StreamError as exc:
                await s.wait_for_server(exc)
            except Exception:
                s.logger.exception("stream upkeep failed")
                await asyncio.sleep(claim_every)

    async def _touch_in_hand(self, now: float) -> None:
        s = self.state
        stale = s.settings.claim_idle_ms / 2000
        ids = [i for i, taken in s.in_hand.items() if now - taken >= stale]
        if ids:
            await s.backend.touch(s.stream_key, s.group, s.consumer, ids)
            for i in ids:
                if i in s.in_hand:
                    s.in_hand[i] = now
