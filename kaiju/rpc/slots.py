"""Slots: the bound on methods running at once (`max_parallel_tasks`), and the bounded line
in front of it (`max_queue`).

A counter with a line of waiters. Taking a free slot is one decrement (`take`, no
coroutine); a finishing request hands its slot straight to the first
waiter, so no newcomer can jump the line and nothing starves or deadlocks. The line is
bounded: `full` says a newcomer would find no slot and no place in line, so it is refused
at once instead of piling up (two counters compared: nothing is built per call).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

__all__ = ["Slots"]


class Slots:
    """`free` slots, the `waiters` in line (futures), and `waiting`: the places in line taken
    (the live waiters, plus notifications accepted but not started yet; see `reserve`).

    `take` takes a free slot without waiting, `acquire` waits in line for one, `release`
    gives one back (to the first waiter, if any). `limit` is the length of the line."""

    __slots__ = ("free", "size", "waiters", "waiting", "limit")

    def __init__(self, size: int = 0, limit: int = 1 << 62):
        self.size = size
        self.free = size
        self.limit = limit
        self.waiting = 0
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def busy(self) -> int:
        """Slots taken."""
        return self.size - self.free

    @property
    def full(self) -> bool:
        """Whether all slots are taken and the line is at its limit: new work is refused."""
        return self.waiting - self.free >= self.limit

    def reserve(self) -> None:
        """Take a place in line for work that will `acquire` later (a notification whose task has
        not started); `unreserve` gives it back just before that work starts."""
        self.waiting += 1

    def unreserve(self) -> None:
        """Give back a place taken by `reserve`."""
        self.waiting -= 1

    def take(self) -> bool:
        """Take a free slot if there is one (True); False: the caller must `acquire` one."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def acquire(self, coro: Coroutine[Any, Any, Any] | None = None) -> None:
        """Take a slot, waiting in line when none is free; on cancellation `coro` (not started) is closed."""
        if self.take():
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.waiting += 1
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            elif fut in self.waiters:
                self.waiters.remove(fut)  # leave the line now: it is bounded, no stale places in it
            if coro is not None:
                coro.close()
            raise
        finally:
            self.waiting -= 1

    def release(self) -> None:
        """Give a slot back: to the first live waiter, else to the free count."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1
