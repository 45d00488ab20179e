"""Tasks run by a real kaiju Entrypoint: stop within the app's shutdown budget."""

from __future__ import annotations

import asyncio

from kaiju.locks.memory import MemoryLocks
from kaiju.rpc.methods import method
from kaiju.rpc.server import RPCServer
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.service import Service
from kaiju.tasks import PeriodicTask

from tests.tasks.helpers import wait_until


class Slow(Service):
    service_name = "slow"

    async def start(self) -> None:
        pass

    @method
    async def work(self) -> None:
        await asyncio.sleep(60)


class StopRecordingRPCServer(RPCServer):
    stopped = False

    async def stop(self, exception: Exception | None = None) -> None:
        self.stopped = True
        await super().stop(exception)


class StopRecordingLocks(MemoryLocks):
    stopped = False

    async def stop(self, exception: Exception | None = None) -> None:
        self.stopped = True
        await super().stop(exception)


def entrypoint(*services: Service, **main) -> Entrypoint:
    config = {"main": {"name": "tasks", **main}}
    return Entrypoint(*services, config=config, catch_signals=(), log_config=False, os_env=False)


async def test_stop_leaves_the_lower_layers_part_of_the_app_shutdown_budget():
    rpc, locks = StopRecordingRPCServer(), StopRecordingLocks()
    # the run outlasts the whole stop budget; the task's own setting does not cap it
    task = PeriodicTask(name="slow_task", interval=0.1, method="slow.work", singleton=True)
    ep = entrypoint(Slow(), rpc, locks, task, shutdown_timeout=1)
    async with ep:
        await wait_until(lambda: task.running)
    assert ep.state == "stopped"
    assert not task.running
    assert task.last_error.startswith("CancelledError")
    # the services the task needs were stopped after it, inside the same budget
    assert rpc.stopped and locks.stopped
