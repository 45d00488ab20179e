"""CronTask: a task fired at the times of a cron spec, in a time zone."""

from __future__ import annotations

from typing import Any, ClassVar

from kaiju.runtime.types import CronSpec, TimeZone
from kaiju.tasks.schedule import CronSchedule
from kaiju.tasks.service import ScheduledTask

__all__ = ["CronTask"]


class CronTask(ScheduledTask):
    """Runs at the times a cron spec gives, read on the wall clock of `timezone`.

    `cron` has 5 fields, or 6 with seconds last, as croniter reads them. See
    `kaiju.tasks.schedule` for what happens when the clocks change.
    """

    kind: ClassVar[str] = "cron"
    __required__ = ("cron",)

    cron: CronSpec
    """The cron spec: 5 fields (minute hour day month weekday), or 6 with seconds last."""
    timezone: TimeZone = TimeZone("UTC")
    """The IANA time zone the spec is read in."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.schedule = CronSchedule(self.cron, self.timezone)  # SettingError naming cron or timezone

    def _first_fire(self, now: float) -> float:
        return self.schedule.next_fire(now)

    def _next_fire(self, fire: float) -> float:
        return self.schedule.next_fire(fire)

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "schedule": str(self.cron), "timezone": str(self.timezone)}
