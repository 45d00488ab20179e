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

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.tasks.cron import CronTask
    from kaiju.tasks.listing import Tasks
    from kaiju.tasks.periodic import PeriodicTask
    from kaiju.tasks.schedule import CronSchedule, next_periodic_fire
    from kaiju.tasks.service import ScheduledTask

__getattr__ = _front_door(__name__, __file__, globals())
