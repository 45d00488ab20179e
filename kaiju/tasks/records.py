"""The record of each task's runs, and the fleet's control of tasks: in this process, or in
Redis for every process of the app.

    {<ns>._tasks}.last.<task>    the latest run (JSON): fire time, start, duration, outcome, error, process
    {<ns>._tasks}.runs.<task>    the last `HISTORY` runs, newest first (a list of JSON)
    {<ns>._tasks}.paused         the tasks paused across the app (a set)
    {<ns>._tasks}.run_now        runs asked for, by task name (a list: each popped by one process)

Every key of an app's tasks carries one hash tag, so the scripts and pipelines touch one
Cluster slot. The latest run's fire time is what a restarted process (or one taking a
singleton over) compares the schedule with to find missed fires, and `claim` moves it on
only forward, atomically, so a missed fire is caught up by one process only.
"""

from __future__ import annotations

import abc
import os
import socket
from collections import deque
from typing import TYPE_CHECKING

import msgspec

from kaiju import keys

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.redis import RedisConnection
    from kaiju.runtime.service import Namespace

__all__ = ["HISTORY", "MemoryRecords", "RedisRecords", "RunRecord", "TaskRecords", "process_name"]

HISTORY = 50  # runs kept per task


def process_name() -> str:
    """`<hostname>-<pid>`: which process ran a run."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RunRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One run of a task: its scheduled `fire` time and `started` time (unix seconds), how
    long it took, how it ended ("running", "ok", "failed", "timeout", "cancelled"; "claimed"
    for a catch-up taken and not begun), the error, and the process that ran it."""

    fire: float
    started: float
    outcome: str = "running"
    duration: float | None = None
    error: str | None = None
    process: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(RunRecord).decode


class TaskRecords(abc.ABC):
    """The records and control of an app's tasks (`shared`: seen by every process)."""

    shared = False

    @abc.abstractmethod
    async def last(self, task: str) -> RunRecord | None:
        """The latest run of `task` (or the catch-up claimed last), None when it never ran."""

    @abc.abstractmethod
    async def history(self, task: str, count: int = HISTORY) -> list[RunRecord]:
        """The last `count` finished runs of `task`, newest first."""

    @abc.abstractmethod
    async def begin(self, task: str, run: RunRecord) -> None:
        """A run begins: it is the latest, unless a later fire is recorded already."""

    @abc.abstractmethod
    async def finish(self, task: str, run: RunRecord) -> None:
        """A run ended: the latest (as for `begin`) and the first of the history."""

    @abc.abstractmethod
    async def claim(self, task: str, run: RunRecord) -> bool:
        """Take the catch-up of `run.fire`: True when no fire as late is recorded (it is now),
        False when another process ran or claimed it (or a later one)."""

    @abc.abstractmethod
    async def paused(self) -> set[str]:
        """The tasks paused across the app."""

    @abc.abstractmethod
    async def set_paused(self, task: str, paused: bool) -> None:
        """Pause `task` across the app (until `set_paused(task, False)`), or resume it."""

    @abc.abstractmethod
    async def ask_run(self, task: str) -> None:
        """Ask one process of the app to run `task` now."""

    @abc.abstractmethod
    async def take_runs(self) -> list[str]:
        """The runs asked for (task names), each handed to one caller only."""


class MemoryRecords(TaskRecords):
    """The records of this process only (nothing survives it; nothing to catch up after a restart)."""

    def __init__(self) -> None:
        self._last: dict[str, RunRecord] = {}
        self._runs: dict[str, deque[RunRecord]] = {}
        self._paused: set[str] = set()
        self._asked: list[str] = []

    async def last(self, task: str) -> RunRecord | None:
        return self._last.get(task)

    async def history(self, task: str, count: int = HISTORY) -> list[RunRecord]:
        return list(self._runs.get(task, ()))[:count]

    async def begin(self, task: str, run: RunRecord) -> None:
        old = self._last.get(task)
        if old is None or old.fire <= run.fire:
            self._last[task] = run

    async def finish(self, task: str, run: RunRecord) -> None:
        await self.begin(task, run)
        self._runs.setdefault(task, deque(maxlen=HISTORY)).appendleft(run)

    async def claim(self, task: str, run: RunRecord) -> bool:
        old = self._last.get(task)
        if old is not None and old.fire >= run.fire:
            return False
        self._last[task] = run
        return True

    async def paused(self) -> set[str]:
        return set(self._paused)

    async def set_paused(self, task: str, paused: bool) -> None:
        (self._paused.add if paused else self._paused.discard)(task)

    async def ask_run(self, task: str) -> None:
        self._asked.append(task)

    async def take_runs(self) -> list[str]:
        asked, self._asked = self._asked, []
        return asked


class RedisRecords(TaskRecords):
    """The records in Redis under `{<ns>._tasks}`, shared by every process of the app."""

    shared = True

    def __init__(self, redis: RedisConnection, namespace: Namespace):
        from kaiju.lua import TASK_RECORD

        self.client = redis.client
        self.prefix = keys.tag(namespace.get_key(keys.TASKS))
        self._record = self.client.register_script(TASK_RECORD)

    def _key(self, what: str, task: str | None = None) -> str:
        return f"{self.prefix}.{what}" if task is None else f"{self.prefix}.{what}.{task}"

    async def last(self, task: str) -> RunRecord | None:
        raw = await self.client.get(self._key("last", task))
        return _decode(raw) if raw else None

    async def history(self, task: str, count: int = HISTORY) -> list[RunRecord]:
        return [_decode(raw) for raw in await self.client.lrange(self._key("runs", task), 0, count - 1)]

    async def _write(self, task: str, run: RunRecord, mode: str) -> bool:
        keys_ = [self._key("last", task), self._key("runs", task)]
        return bool(await self._record(keys=keys_, args=[mode, repr(run.fire), _encode(run), HISTORY]))

    async def begin(self, task: str, run: RunRecord) -> None:
        await self._write(task, run, "begin")

    async def finish(self, task: str, run: RunRecord) -> None:
        await self._write(task, run, "finish")

    async def claim(self, task: str, run: RunRecord) -> bool:
        return await self._write(task, run, "claim")

    async def paused(self) -> set[str]:
        return {name.decode() for name in await self.client.smembers(self._key("paused"))}

    async def set_paused(self, task: str, paused: bool) -> None:
        if paused:
            await self.client.sadd(self._key("paused"), task)
        else:
            await self.client.srem(self._key("paused"), task)

    async def ask_run(self, task: str) -> None:
        await self.client.rpush(self._key("run_now"), task)

    async def take_runs(self) -> list[str]:
        key = self._key("run_now")
        async with self.client.pipeline(transaction=False) as pipe:  # one key: one node, in order
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            asked, _ = await pipe.execute()
        return [name.decode() for name in asked]
