"""Periodic and cron tasks from config: each task is its own service.

    services:
      - cls: CronTask
        name: nightly_cleanup
        settings: {cron: "0 3 * * *", timezone: Europe/Berlin, method: demo.cleanup}

`PeriodicTask` and `CronTask` run an RPC method (system scope) or an async function on
their schedule; `Tasks` lists every task of the app over RPC (`tasks.list`).
"""

from kaiju.tasks.cron import CronTask
from kaiju.tasks.listing import Tasks
from kaiju.tasks.periodic import PeriodicTask
from kaiju.tasks.schedule import CronSchedule, TaskSettingsError, next_periodic_fire
from kaiju.tasks.service import ScheduledTask

__all__ = [
    "CronSchedule",
    "CronTask",
    "PeriodicTask",
    "ScheduledTask",
    "TaskSettingsError",
    "Tasks",
    "next_periodic_fire",
]
