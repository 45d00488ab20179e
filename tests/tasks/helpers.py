"""Helpers for the task tests: bounded waits and a job that records its runs."""

from __future__ import annotations

import asyncio

from kaiju.testing import eventually

WAIT = 5.0  # upper bound of any wait in the task tests, seconds


async def wait_until(predicate, timeout: float = WAIT, what: str = "the condition") -> None:
    """Wait until `predicate()` holds; fail loudly (AssertionError naming `what`) after `timeout`."""
    await eventually(predicate, timeout=timeout, what=what)


def record_claims(task) -> list[float]:
    """The fires a singleton `task` won the lock for, in order: the fire each of its runs ran.

    Taken at the claim: a job reading `task.last_fire` may see a later fire, because on a
    busy loop the timer of the next fire can come before a run's job starts.
    """
    claimed: list[float] = []
    claim = task._claim

    async def recording(fire: float) -> str | None:
        refused = await claim(fire)
        if refused is None:  # won
            claimed.append(fire)
        return refused

    task._claim = recording
    return claimed


class Recorder:
    """An async job that records its runs and can be held open."""

    def __init__(self, hold: bool = False, fail: bool = False):
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.events: list[str] = []
        self.cancelled = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail = fail

    async def __call__(self, **kwargs):
        self.calls += 1
        n = self.calls
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.events.append(f"start{n}")
        try:
            await self.release.wait()
            if self.fail:
                raise ValueError(f"boom {n}")
            return {"n": n, **kwargs}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
            self.events.append(f"end{n}")
