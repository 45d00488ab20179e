"""PeriodicTask: a task fired every `interval` seconds."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from kaiju.runtime.service import SettingError
from kaiju.runtime.types import NonNegative, Positive
from kaiju.tasks.schedule import next_periodic_fire
from kaiju.tasks.service import ScheduledTask

__all__ = ["PeriodicTask"]


class PeriodicTask(ScheduledTask):
    """Runs every `interval` seconds, the first time `delay` seconds after start.

    Fire times are fixed (start + delay + k * interval), so a run's length never shifts
    the schedule. With `singleton: true` they are aligned on multiples of `interval`
    since the Unix epoch, so that every process sees the same fire times.
    """

    kind: ClassVar[str] = "periodic"
    __required__ = ("interval",)

    interval: Positive
    """Seconds between fires."""
    delay: NonNegative = 0.0
    """Seconds before the first fire."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._anchor = 0.0

    def check(self) -> None:
        """Also: `jitter` must stay below `interval`."""
        super().check()
        if self.jitter >= self.interval:
            # a fire jittered past the next one would be taken for a fire the loop fell behind on
            raise SettingError("jitter", f"expected less than interval ({self.interval:g} s), got {self.jitter:g}")

    def _first_fire(self, now: float) -> float:
        self._anchor, first = self._plan(now)
        return first

    def _plan(self, now: float) -> tuple[float, float]:
        """(anchor, first fire) for a start at `now`: a singleton's fires sit on multiples of
        `interval`, which every process agrees on; others count from their own start."""
        if self.singleton:
            return 0.0, next_periodic_fire(0.0, self.interval, now + self.delay - 1e-6)
        return now + self.delay, now + self.delay

    def _next_fire(self, fire: float) -> float:
        return next_periodic_fire(self._anchor, self.interval, fire)

    def next_fires(self, count: int = 2, now: float | None = None) -> list[float]:
        anchor, first = self._plan(time.time() if now is None else now)  # a running task's anchor stays
        fires = [first]
        while len(fires) < count:
            fires.append(next_periodic_fire(anchor, self.interval, fires[-1]))
        return fires

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "schedule": f"every {self.interval:g} s",
            "interval": self.interval,
            "delay": self.delay,
        }
