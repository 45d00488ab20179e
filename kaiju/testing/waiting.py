"""`eventually`: wait in a test until a condition holds, and fail loudly at a deadline.

    await eventually(lambda: len(seen) == 3, what="three deliveries")

A test that waits this way does not depend on how fast the machine is: it goes on as soon as
the condition holds and fails with an `AssertionError` naming what it waited for, never
silently, when it does not hold in time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> None:
    """Wait until `predicate()` (a function, or one returning an awaitable) is true.

    Checks every `interval` seconds; raises AssertionError naming `what` when `timeout`
    seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
