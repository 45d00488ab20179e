"""`Tasks`: the app's scheduled tasks over RPC (`tasks.list`)."""

from __future__ import annotations

from typing import Any

from kaiju.rpc.methods import method
from kaiju.runtime.service import Service
from kaiju.tasks.service import ScheduledTask

__all__ = ["Tasks"]


class Tasks(Service):
    """Lists every periodic and cron task of the app with its schedule and counters.

    Add it to the config (`cls: Tasks`) next to an `RPCServer` to get the RPC method
    `tasks.list` (system scope). It keeps no state: each call reads the tasks' own status.
    """

    service_name = "tasks"

    def tasks(self) -> list[ScheduledTask]:
        """The task services of the app, in config order."""
        return [svc for svc in self.app.services.values() if isinstance(svc, ScheduledTask)]

    @method(name="list")
    async def list_tasks(self, name: str | None = None) -> list[dict[str, Any]]:
        """Status of every task (or of the task called `name`): schedule, next and last run,
        last result or error, runs, misses, failures."""
        return [task.status() for task in self.tasks() if name is None or task.name == name]
