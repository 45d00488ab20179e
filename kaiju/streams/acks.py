"""The ack hand-over: a finished batch's acknowledgements ride on the reader's next read.

A listener acknowledges a message only after it ran. Sent on its own, each batch's `XACK`
is a round trip of its own, as many as the reads (`XREADGROUP`) themselves. Yet the reader
is usually about to read right then: the batch that just ended gives its slot back, and
that wakes the reader, waiting for a slot. So a finished batch hands its ids to the reader
instead, and the reader's next read sends them in the same round trip
(`StreamBackend.ack_and_read_new`): one round trip per batch instead of two.

The catch is that the reader may *not* read next: it may park on a topic lock, claim idle
messages, read its own pending ones, wait for a batch, back off after an error, or stop.
Acks handed over then would wait for a read that does not come, and the messages would be
redelivered meanwhile. Hence the protocol:

- the reader says where it is (`at_slot`: waiting for a slot, it reads as soon as it gets
  one; `reading`: in a read, which comes back at once when the last one came back full;
  elsewhere otherwise);
- a batch hands its ids over (`offer`) only when the reader is at the slot, or in a read
  that comes back at once; `offer` returns a future the batch awaits: True once the read
  carrying them went through, False when they were given back;
- before anything but a plain read, and when a read fails, the reader gives back what it
  holds (`refuse`): the batches waiting then acknowledge on their own, as they would have
  without the hand-over.

So an ack is never lost to the hand-over: it lands with a read, or its batch sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["AckHandover"]

AT_SLOT, READING, ELSEWHERE = "slot", "reading", "elsewhere"


class AckHandover:
    """The ids of finished batches waiting to ride on the reader's next read."""

    __slots__ = ("ids", "landed", "reader_at", "last_full")

    def __init__(self) -> None:
        self.ids: list[str] = []
        # tells the batches whose ids are in `ids` whether the read carrying them went through
        self.landed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.reader_at = ELSEWHERE  # where the reader is: whether a batch may hand its ids over
        self.last_full = False  # the last read came back full: the one in flight does not wait

    def offer(self, ids: Sequence[str]) -> asyncio.Future[bool] | None:
        """Hand `ids` over when the reader reads next (None: it does not; acknowledge them
        yourself). Await the future returned: True once they landed, False when given back."""
        at = self.reader_at
        if at is AT_SLOT or (at is READING and self.last_full):
            self.ids.extend(ids)
            return self.landed
        return None

    def take(self) -> tuple[list[str], asyncio.Future[bool]]:
        """The reader, about to read: the ids to send with it, and the future to settle
        (`settle`) once the read went through or failed."""
        taken = self.ids, self.landed
        self.ids, self.landed = [], asyncio.get_running_loop().create_future()
        return taken

    @staticmethod
    def settle(landed: asyncio.Future[bool], ok: bool) -> None:
        """Tell the batches whose ids a read carried whether it went through."""
        if not landed.done():
            landed.set_result(ok)

    def refuse(self) -> None:
        """The reader is not going to read right away: give back what it holds (the batches
        acknowledge on their own)."""
        if self.ids:
            _, landed = self.take()
            landed.set_result(False)

    def at(self, where: str) -> None:
        """Where the reader is now: `AT_SLOT`, `READING` or `ELSEWHERE`."""
        self.reader_at = where
