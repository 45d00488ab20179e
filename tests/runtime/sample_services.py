"""Services for runtime tests: they append what happens to them to a file, one line each."""

from __future__ import annotations

import asyncio
import os
from typing import Optional

from kaiju.runtime.service import Service


class Recorder(Service):
    """Writes `start NAME` / `started NAME` / `stop NAME` lines to `events` (a path), and
    `stopping NAME` when stop() begins a `stop_delay`."""

    events: str = ""
    delay: float = 0.0  # seconds start() takes
    fail: bool = False  # start() raises after the delay
    stop_delay: float = 0.0  # seconds stop() takes

    def record(self, what: str) -> None:
        if self.events:
            with open(self.events, "a") as f:
                f.write(f"{what} {self.name}\n")
                f.flush()
                os.fsync(f.fileno())

    async def start(self) -> None:
        self.record("start")
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError(f"{self.name} was told to fail")
        self.record("started")

    async def stop(self, exception: Exception | None = None) -> None:
        if self.stop_delay:
            self.record("stopping")
            await asyncio.sleep(self.stop_delay)
        self.record("stop")


class Database(Recorder):
    service_name = "db"


class Cache(Recorder):
    service_name = "cache"
    db: Database


class Api(Recorder):
    service_name = "api"
    db: Database
    cache: Cache
    extra: Optional[Cache] = None
    port: int = 8080
    hosts: list[str] = []


class Worker(Recorder):
    service_name = "worker"
    cache: Optional[Cache] = None


class Needy(Recorder):
    """Requires `level` and needs an Api."""

    __required__ = ("level",)
    level: int
    api: Api
