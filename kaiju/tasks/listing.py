"""`Tasks`: the app's scheduled tasks over RPC (`tasks.list`, `tasks.history`, `tasks.pause`,
`tasks.resume`, `tasks.run_now`), for every process of the app when they share a store, and
tasks scheduled at run time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from kaiju.locks.base import Locks
from kaiju.redis import RedisConnection
from kaiju.rpc.errors import InvalidParams
from kaiju.rpc.methods import method
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import Positive
from kaiju.tasks.records import HISTORY, MemoryRecords, RedisRecords, TaskRecords
from kaiju.tasks.service import ScheduledTask

__all__ = ["Tasks"]


class Tasks(Service):
    """Lists every periodic and cron task of the app with its schedule and counters, and
    schedules tasks at run time (kaiju-tools' `Scheduler.schedule_task`).

    Add it to the config (`cls: Tasks`) next to an `RPCServer` to get the RPC methods
    `tasks.list`, `tasks.history`, `tasks.pause`, `tasks.resume` and `tasks.run_now` (system
    scope); with a `RedisConnection` they act on every process of the app. Another service
    depending on it (`tasks: Tasks`) adds a task with
    `await self.tasks.add(name, interval=60, call=self.cleanup)` (or `cron=`, `method=`),
    and pauses, resumes or removes it by name; a task added so runs with the same
    policies, timeouts and singleton option as a configured one, is listed by `tasks.list`
    and stops with this service.
    """

    service_name = "tasks"

    rpc: RPCServer | None = None
    """The RPCServer the tasks added at run time call their methods through."""
    locks: Locks | None = None
    """The locks the singleton tasks added at run time claim their fires with."""
    store: RedisConnection | None = None
    """The Redis connection the tasks' records and the app's pause and run-now requests live
    in (found by type): `pause`, `resume` and `run_now` then reach every process of the app.
    None: this process only."""
    control_interval: Positive = 1.0
    """Seconds between two looks at the shared store for pauses, resumes and runs asked for
    by other processes (or `kaiju-run tasks`)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._added: dict[str, ScheduledTask] = {}
        self.records: TaskRecords = MemoryRecords()
        self._control: asyncio.Task | None = None
        self._following = False  # the control loop goes on while set

    async def start(self) -> None:
        """With a shared store, follow the app's pauses and run requests (unless the app runs
        without its transports: `kaiju-run tasks` only writes them)."""
        if self.store is not None:
            self.records = RedisRecords(self.store, self.app.namespace)
            if self.app.transports:
                self._following = True
                self._control = self.loop.create_task(self._follow(), name=f"{self.name}.control")

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop following the store, and the tasks added at run time (configured ones stop with the app)."""
        if self._control is not None:
            self._following = False  # ends the loop even if a Redis call swallows the cancellation
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control
            self._control = None
        for name in list(self._added):
            await self.remove(name)

    async def _follow(self) -> None:
        """Apply what the store says every `control_interval`: pauses, resumes, runs asked for."""
        while self._following:
            await asyncio.sleep(self.control_interval)
            try:
                await self.apply_control()
            except Exception as exc:  # the store is down: try again at the next tick
                self.logger.warning(f"cannot read the tasks' control: {exc!r}")

    async def apply_control(self) -> None:
        """Pause the tasks paused across the app, resume those no longer paused, and run
        those asked for (each request popped by one process)."""
        paused = await self.records.paused()
        for task in self.tasks():
            if task.name in paused and not task.fleet_paused:
                task.fleet_paused = True
                task.pause()
                self.logger.info(f"task {task.name} paused across the app", task=task.name)
            elif task.name not in paused and task.fleet_paused:
                task.fleet_paused = False
                task.resume()
                self.logger.info(f"task {task.name} resumed across the app", task=task.name)
        for name in await self.records.take_runs():
            found = self.app.services.get(name)
            if isinstance(found, ScheduledTask):
                self.logger.info(f"task {name} run now, as asked", task=name)
                self.loop.create_task(found.fire_now(), name=f"task:{name}:now")
            else:
                self.logger.warning(f"a run of {name!r} was asked for, no such task here")

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
        task.rpc, task.locks, task.store = self.rpc, self.locks, self.store
        task.set_loop(self.loop)
        self.app.services[name] = task  # check() looks for the method among the app's services
        try:
            await task.start()  # runs check()
        except SettingError as exc:
            del self.app.services[name]
            raise ValueError(f"task {name}: {exc}") from None
        self._added[name] = task
        return task

    async def pause(self, name: str) -> None:
        """Stop firing task `name` (a run going on finishes) in every process sharing the store
        (this one at once, the others within `control_interval`), also after a restart, until
        `resume`. KeyError when there is no such task."""
        task = self.task(name)
        await self.records.set_paused(name, True)
        task.fleet_paused = self.records.shared
        task.pause()

    async def resume(self, name: str) -> None:
        """Fire task `name` on its schedule again, in every process; KeyError when there is none."""
        task = self.task(name)
        await self.records.set_paused(name, False)
        task.fleet_paused = False
        task.resume()

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

    def _known(self, name: str) -> ScheduledTask:
        try:
            return self.task(name)
        except KeyError:
            raise InvalidParams(f"Invalid params: no task {name!r}", data={"field": "name"}) from None

    @method(name="list")
    async def list_tasks(self, name: str | None = None) -> list[dict[str, Any]]:
        """Status of every task (or of the task called `name`): schedule, state (paused across
        the app or not), next run here, the last run anywhere (when, how long, outcome, error,
        which process ran it), counters of this process."""
        tasks = [task for task in self.tasks() if name is None or task.name == name]
        paused = await self.records.paused()
        listed = []
        for task in tasks:
            status = task.status()
            last = await task.records.last(task.name)
            status["paused"] = status["paused"] or task.name in paused
            status["last"] = msgspec.to_builtins(last) if last is not None else None
            listed.append(status)
        return listed

    @method
    async def history(self, name: str, count: Annotated[int, Meta(ge=1, le=HISTORY)] = 20) -> list[dict[str, Any]]:
        """The last `count` runs of task `name`, newest first, in any process sharing the store:
        fire time, start, duration, outcome ("ok", "failed", "timeout", "cancelled"), error, process."""
        task = self._known(name)
        return [msgspec.to_builtins(run) for run in await task.records.history(name, count)]

    @method(name="pause")
    async def pause_task(self, name: str) -> dict[str, Any]:
        """Pause task `name` across the app (it stays paused across restarts until resumed)."""
        self._known(name)
        await self.pause(name)
        return {"name": name, "paused": True, "shared": self.records.shared}

    @method(name="resume")
    async def resume_task(self, name: str) -> dict[str, Any]:
        """Resume task `name` across the app."""
        self._known(name)
        await self.resume(name)
        return {"name": name, "paused": False, "shared": self.records.shared}

    @method
    async def run_now(self, name: str) -> dict[str, Any]:
        """Run task `name` once now, outside its schedule: with a shared store, one process of
        the app that runs its tasks picks the request up (`queued`); else this process runs it
        and answers how it went."""
        task = self._known(name)
        if self.records.shared:
            await self.records.ask_run(name)
            return {"name": name, "queued": True}
        await task.fire_now()
        return {"name": name, "queued": False, "result": task.last_result, "error": task.last_error}
