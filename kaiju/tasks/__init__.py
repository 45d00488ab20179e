"""Periodic and cron tasks from config: each task is its own service.

    services:
      - cls: CronTask
        name: nightly_cleanup
        settings: {cron: "0 3 * * *", timezone: Europe/Berlin, method: demo.cleanup}

`PeriodicTask` and `CronTask` run an RPC method (system scope) or an async function on
their schedule; `Tasks` lists every task of the app over RPC (`tasks.list`). Names are
imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "CronSchedule": "kaiju.tasks.schedule",
    "CronTask": "kaiju.tasks.cron",
    "PeriodicTask": "kaiju.tasks.periodic",
    "ScheduledTask": "kaiju.tasks.service",
    "Tasks": "kaiju.tasks.listing",
    "next_periodic_fire": "kaiju.tasks.schedule",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.tasks.cron import CronTask
    from kaiju.tasks.listing import Tasks
    from kaiju.tasks.periodic import PeriodicTask
    from kaiju.tasks.schedule import CronSchedule, next_periodic_fire
    from kaiju.tasks.service import ScheduledTask


__getattr__ = _lazy_getattr("kaiju.tasks", _EXPORTS, globals())
