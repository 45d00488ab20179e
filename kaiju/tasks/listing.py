"""`Tasks`: the app's scheduled tasks over RPC (`tasks.list`), and tasks scheduled at run time."""

from __future__ import annotations

from typing import Any

import msgspec

from kaiju.locks.base import Locks
from kaiju.rpc.methods import method
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service, SettingError
from kaiju.tasks.service import ScheduledTask

__all__ = ["Tasks"]


class Tasks(Service):
    """Lists every periodic and cron task of the app with its schedule and counters, and
    schedules tasks at run time (kaiju-tools' `Scheduler.schedule_task`).

    Add it to the config (`cls: Tasks`) next to an `RPCServer` to get the RPC method
    `tasks.list` (system scope). Another service depending on it (`tasks: Tasks`) adds a
    task with `await self.tasks.add(name, interval=60, call=self.cleanup)` (or `cron=`,
    `method=`), and pauses, resumes or removes it by name; a task added so runs with the same
    policies, timeouts and singleton option as a configured one, is listed by `tasks.list`
    and stops with this service.
    """

    service_name = "tasks"

    rpc: RPCServer | None = None
    locks: Locks | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._added: dict[str, ScheduledTask] = {}

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop the tasks added at run time (configured ones stop with the app)."""
        for name in list(self._added):
            await self.remove(name)

    def tasks(self) -> list[ScheduledTask]:
        """The task services of the app, in config order, then those added at run time."""
        return [svc for svc in self.app.services.values() if isinstance(svc, ScheduledTask)]

    def task(self, name: str) -> ScheduledTask:
        """The task called `name`; KeyError when there is none."""
        found = self.app.services.get(name)
        if not isinstance(found, ScheduledTask):
            raise KeyError(f"no task {name!r}")
        return found

    async def add(self, name: str, **settings: Any) -> ScheduledTask:
        """Schedule a task now: `interval=` (seconds; a `PeriodicTask`) or `cron=` (a `CronTask`),
        and the settings either takes in config (`call=` an async function or "module:function",
        or `method=` and `params=`; `policy`, `timeout`, `jitter`, `singleton`, `timezone`, ...).

        Returns the started task. Raises ValueError for a name in use or a bad setting (the
        message names it), as `kaiju-run check` would for a configured task.
        """
        from kaiju.config.settings import validation_problem
        from kaiju.runtime.plan import validate_settings
        from kaiju.tasks.cron import CronTask
        from kaiju.tasks.periodic import PeriodicTask

        if name in self.app.services:
            raise ValueError(f"{name!r} already names a service of the app")
        if ("interval" in settings) == ("cron" in settings):
            raise ValueError("expected exactly one of interval= (a periodic task) and cron= (a cron task)")
        cls = PeriodicTask if "interval" in settings else CronTask
        try:
            kwargs = validate_settings(cls, settings)
        except msgspec.ValidationError as exc:
            path, problem = validation_problem(str(exc), settings)
            raise ValueError(f"task {name}: {'.'.join(map(str, path))}: {problem}") from None
        task = cls(name=name, app=self.app, **kwargs)
        task.rpc, task.locks = self.rpc, self.locks
        task.set_loop(self.loop)
        self.app.services[name] = task  # check() looks for the method among the app's services
        try:
            await task.start()  # runs check()
        except SettingError as exc:
            del self.app.services[name]
            raise ValueError(f"task {name}: {exc}") from None
        self._added[name] = task
        return task

    def pause(self, name: str) -> None:
        """Stop firing task `name` (a run going on finishes); KeyError when there is none."""
        self.task(name).pause()

    def resume(self, name: str) -> None:
        """Fire task `name` on its schedule again; KeyError when there is none."""
        self.task(name).resume()

    async def remove(self, name: str) -> None:
        """Stop a task added at run time (waiting for its run as the app's stop would) and forget
        it; KeyError for a configured task or none."""
        task = self._added.pop(name, None)
        if task is None:
            raise KeyError(f"no task {name!r} added at run time")
        try:
            await task.stop()
        finally:
            self.app.services.pop(name, None)

    @method(name="list")
    async def list_tasks(self, name: str | None = None) -> list[dict[str, Any]]:
        """Status of every task (or of the task called `name`): schedule, next and last run,
        last result or error, runs, misses, failures."""
        return [task.status() for task in self.tasks() if name is None or task.name == name]
