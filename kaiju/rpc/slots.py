"""Slots: the bound on methods running at once (`max_parallel_tasks`).

A counter with a line of waiters. Taking a free slot is one decrement (the dispatcher's
hot path does it inline); a finishing request hands its slot straight to the first
waiter, so no newcomer can jump the line and nothing starves or deadlocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

__all__ = ["Slots"]


class Slots:
    """`free` slots and the `waiters` in line (futures).

    The executor takes a free slot inline (`free -= 1`) and gives it back inline when nobody
    waits; `acquire` and `release` are the general forms."""

    __slots__ = ("free", "size", "waiters")

    def __init__(self, size: int = 0):
        self.size = size
        self.free = size
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def busy(self) -> int:
        """Slots taken."""
        return self.size - self.free

    @property
    def waiting(self) -> int:
        """Requests in line."""
        return sum(1 for f in self.waiters if not f.done())

    async def acquire(self, coro: Coroutine[Any, Any, Any] | None = None) -> None:
        """Take a slot, waiting in line when none is free; on cancellation `coro` (not started) is closed."""
        if self.free > 0:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            if coro is not None:
                coro.close()
            raise

    def release(self) -> None:
        """Give a slot back: to the first live waiter, else to the free count."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1
