"""The reader of a `StreamListener`: takes messages from the stream, a batch at a time.

One task, in turns, each holding one of the listener's slots (`max_parallel_batches`):
first the consumer's own pending messages (left by a previous run of the same consumer
name), then claiming idle messages of any consumer (every `claim_every`) takes turns with
reading new ones. A claim never waits for a slot that a blocking read holds, nor for a
backlog to drain. Each batch taken is handed to the batch runner (`batches.py`), which
keeps the slot until the batch ends. A read carries the acknowledgements that finished
batches handed over (`acks.py`); before any other call the reader gives them back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kaiju.streams.acks import AT_SLOT, ELSEWHERE, READING
from kaiju.streams.base import GroupMissing, StreamMessage, StreamUnavailable
from kaiju.streams.state import ListenerState

__all__ = ["Reader"]


class Reader:
    """Reads for one listener; `run_batch(msgs)` starts a batch (holding the slot taken for it)."""

    def __init__(self, state: ListenerState, run_batch: Callable[[list[StreamMessage]], None]):
        self.state = state
        self.run_batch = run_batch
        self.claim_cursor = "0-0"  # where the scan of the pending list goes on

    async def run(self) -> None:
        """Read until the listener stops."""
        try:
            await self._turns()
        finally:
            self.state.acks.at(ELSEWHERE)
            self.state.acks.refuse()

    async def _turns(self) -> None:
        s = self.state
        recovering, after = True, "0-0"  # own pending messages first (left by a previous run)
        next_claim, claimed_last = time.monotonic(), False
        while s.running:
            s.acks.at(AT_SLOT)
            await s.slots.acquire()
            s.acks.at(ELSEWHERE)
            if not s.running:  # stop() came while we waited for the slot: take nothing more
                s.slots.release()
                break
            try:
                if s.paused:
                    s.acks.refuse()
                    s.parked = True
                    await s.unpaused.wait()
                    s.parked = False
                    if not s.running:
                        break
                s.reading = True
                now = time.monotonic()
                if recovering:
                    s.acks.refuse()
                    msgs = await s.backend.read_pending(s.stream_key, s.group, s.consumer, s.settings.batch_size, after)
                    if msgs:
                        after = msgs[-1].id
                    else:
                        recovering = False
                elif now >= next_claim and not claimed_last:
                    claimed_last = True
                    s.acks.refuse()
                    more, msgs = await self._claim()
                    # a scan cut short goes on at the next turn, after one read
                    next_claim = now if more else now + s.claim_every
                else:
                    claimed_last = False
                    # a claim due: look for new messages without waiting; else wait no longer than until it is
                    wait_ms = max(min(s.settings.block_ms, int((next_claim - now) * 1000) + 1), 0)
                    msgs = await self._read_new(wait_ms)
                s.reading = False
                s.backoff.reset()
            except BaseException as exc:
                s.reading = False
                s.acks.at(ELSEWHERE)
                s.acks.refuse()
                s.slots.release()
                if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
                    raise
                if isinstance(exc, GroupMissing):
                    await s.recreate_group()
                else:
                    if not isinstance(exc, StreamUnavailable):  # never let one bad reply end the reading
                        s.logger.exception("stream read failed")
                    await s.wait_for_server(exc)
                continue
            if not msgs:
                s.slots.release()
                continue
            self.run_batch(msgs)
            if len(msgs) < s.settings.batch_size:
                s.acks.refuse()  # the batches waited for here must not wait for a read
                # drained: wait for a batch in hand to end before reading again, so that batches
                # grow with the load instead of shrinking to one message (and two round trips)
                # each; one batch, not all, and at most block_ms: a slow message must not hold
                # up the others while a slot is free
                await asyncio.wait(s.batches, timeout=s.settings.block_ms / 1000, return_when=asyncio.FIRST_COMPLETED)

    async def _read_new(self, wait_ms: int) -> list[StreamMessage]:
        """Read new messages, acknowledging on the way those the finished batches handed over."""
        s = self.state
        ids, landed = s.acks.take()
        s.acks.at(READING)
        try:
            if ids:
                msgs = await s.backend.ack_and_read_new(
                    s.stream_key, s.group, s.consumer, ids, s.settings.batch_size, wait_ms
                )
            else:
                msgs = await s.backend.read_new(s.stream_key, s.group, s.consumer, s.settings.batch_size, wait_ms)
        except BaseException:
            s.acks.settle(landed, False)  # the batches acknowledge on their own
            raise
        s.acks.at(ELSEWHERE)
        s.acks.settle(landed, True)
        s.acks.last_full = len(msgs) >= s.settings.batch_size
        return msgs

    async def _claim(self) -> tuple[bool, list[StreamMessage]]:
        """Take over messages idle longer than `claim_idle_ms` (the caller holds a slot for them);
        returns whether the scan of the pending list is unfinished, and the messages to run."""
        s = self.state
        # go on from where the last scan stopped: a scan looks at a bounded stretch of the
        # pending list, and busy entries at its head must not hide idle ones further on
        self.claim_cursor, msgs = await s.backend.claim_idle(
            s.stream_key, s.group, s.consumer, s.settings.claim_idle_ms, s.settings.batch_size, self.claim_cursor
        )
        msgs = [m for m in msgs if m.id not in s.in_hand]  # our own, still running
        if msgs:
            s.counters["claimed"] += len(msgs)
            s.logger.info("claimed idle messages", count=len(msgs))
        return self.claim_cursor != "0-0", msgs
