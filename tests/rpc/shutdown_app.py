"""Services for the shutdown tests (run in a real `kaiju-run` process): they append what
happens to them to a file, one line each."""

from __future__ import annotations

import asyncio

from kaiju import rpc
from kaiju.rpc import Scope
from tests.runtime.sample_services import Recorder


class Journal(Recorder):
    """The lowest layer: its stop stands for a flush of buffered data."""

    service_name = "journal"


class Slow(Recorder):
    service_name = "slow"
    journal: Journal

    @rpc.method(permission=Scope.GUEST)
    async def wait(self, seconds: float) -> float:
        self.record("called")
        await asyncio.sleep(seconds)
        return seconds


class Stuck(Recorder):
    """A service whose stop outlasts any budget (`stop_delay`)."""

    service_name = "stuck"
    journal: Journal
