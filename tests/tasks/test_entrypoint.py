"""Tasks built from config and run by real kaiju Entrypoints: checks before start, stop budget,
singleton across two apps sharing one Redis."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from kaiju.config import ConfigError, load_config_data
from kaiju.locks.memory import MemoryLocks
from kaiju.rpc.methods import method
from kaiju.rpc.server import RPCServer
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.plan import build_plan
from kaiju.runtime.service import Service
from kaiju.tasks import PeriodicTask

from tests.tasks.helpers import record_claims, wait_until


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


class Stubborn:
    """A job that swallows cancellation until `release` is set."""

    def __init__(self):
        self.release = asyncio.Event()
        self.cancels = 0

    async def __call__(self) -> None:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancels += 1


async def test_a_run_ignoring_cancellation_is_left_behind_and_the_stop_goes_on(caplog):
    job = Stubborn()
    rpc, locks = StopRecordingRPCServer(), StopRecordingLocks()
    task = PeriodicTask(name="stubborn", interval=0.1, call=job, singleton=True)
    ep = entrypoint(rpc, locks, task, shutdown_timeout=1)
    try:
        async with ep:
            await wait_until(lambda: task.running)
        assert job.cancels == 1 and task.running, "cancelled once, then left behind"
        assert rpc.stopped and locks.stopped
        assert any("did not unwind" in r.getMessage() for r in caplog.records)
    finally:
        job.release.set()
        await wait_until(lambda: not task.running)


def plan_of(*services):
    data = {"main": {"name": "tasks"}, "services": list(services)}
    return build_plan(load_config_data(data, source="conf/app.yml", os_env=False))


SINGLETON = {"cls": "CronTask", "name": "nightly", "settings": {"cron": "0 3 * * *", "call": "asyncio:sleep", "params": [0], "singleton": True}}


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            [SINGLETON],
            "conf/app.yml: services[nightly].settings.singleton: expected a Locks service in the app for singleton: true",
        ),
        (
            [{"cls": "PeriodicTask", "name": "beat", "settings": {"interval": 1, "method": "demo.tick"}}],
            'conf/app.yml: services[beat].settings.method: expected an RPCServer service in the app to call "demo.tick" through',
        ),
    ],
)
def test_a_missing_dependency_is_a_config_error_before_start(entries, message):
    with pytest.raises(ConfigError) as info:
        plan_of(*entries)
    assert message in str(info.value)


def test_the_same_tasks_pass_the_check_with_what_they_need():
    plan = plan_of(SINGLETON, {"cls": "MemoryLocks"})
    assert isinstance(plan.specs["nightly"].service.locks, MemoryLocks)
    disabled = {**SINGLETON, "settings": {**SINGLETON["settings"], "enabled": False}}
    assert plan_of(disabled).specs["nightly"].service.locks is None  # a disabled task needs nothing


class FireLog(Service):
    """Counts the runs of the task `task` (its RPC method is the task's job)."""

    service_name = "fire_log"
    task: PeriodicTask

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.jobs = 0

    async def start(self) -> None:
        pass

    @method
    async def record(self) -> None:
        self.jobs += 1


def singleton_app(redis_url: str) -> Entrypoint:
    config = {
        "main": {"name": "shop", "env": "test"},
        "services": [
            {"cls": "RedisConnection", "settings": {"url": redis_url}},
            {"cls": "RedisLocks"},
            {"cls": "RPCServer"},
            {"cls": "PeriodicTask", "name": "report",
             "settings": {"interval": 0.05, "singleton": True, "method": "fire_log.record"}},
            {"cls": f"{__name__}:FireLog"},
        ],
    }
    return Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)


async def test_singleton_across_two_entrypoints_sharing_one_redis(redis_url):
    first, second = singleton_app(redis_url), singleton_app(redis_url)
    a, b = first.app.services["report"], second.app.services["report"]
    # the fire each run ran, taken when its lock is won: the job itself cannot tell, as reading
    # task.last_fire there may give the next fire on a busy loop (and so one fire in both apps)
    claimed_a, claimed_b = record_claims(a), record_claims(b)
    async with first:
        async with second:
            # both apps see the same fires; each is taken by one of them. Which one wins a fire is
            # a race (on one loop the first app's claim often goes out first), so no share is asked.
            await wait_until(lambda: min(a.runs + a.elsewhere, b.runs + b.elsewhere) >= 6 and a.elsewhere + b.elsewhere >= 6)
    assert (len(claimed_a), len(claimed_b)) == (a.runs, b.runs)
    assert max(Counter(claimed_a + claimed_b).values()) == 1, "a fire ran in both apps"
    # the jobs ran through the method (the last one may have been stopped before its call)
    for ep, task in ((first, a), (second, b)):
        assert task.runs - 1 <= ep.app.services["fire_log"].jobs <= task.runs
