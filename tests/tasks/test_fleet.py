"""Missed runs and control of a fleet: the last run recorded (in memory, or in Redis for
every process of the app), `misfire: skip | once | all` with `misfire_grace`, catch-ups
claimed once across processes, and `tasks.pause/resume/run_now/history` reaching every app
sharing the store (two apps in one test here; tests/test_fleet.py runs real
`kaiju-run` processes)."""

from __future__ import annotations

import asyncio
import math
import time

import msgspec
import pytest

from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import App
from kaiju.tasks.cron import CronTask
from kaiju.tasks.listing import Tasks
from kaiju.tasks.periodic import PeriodicTask
from kaiju.tasks.records import MemoryRecords, RedisRecords, RunRecord
from kaiju.testing.services import started
from tests.tasks.helpers import Recorder, wait_until

HOUR = 3600.0


@pytest.fixture(params=["redis", "sentinel", "cluster"])
def store(request):
    """A factory of started-able RedisConnections of one mode, all on one server (set); a
    server that stops answering fails the test (socket_timeout) rather than hanging it."""
    from kaiju.redis import RedisConnection

    settings = request.getfixturevalue("redis_settings")(request.param)
    return lambda: RedisConnection(**settings, socket_timeout=3.0)


def hourly(**settings) -> CronTask:
    return CronTask(name="hourly", cron="0 * * * *", **settings)


@pytest.mark.parametrize(
    ("misfire", "grace", "expected"),
    [
        ("skip", 0, []),
        ("once", 0, [7]),
        ("all", 0, [3, 4, 5, 6, 7]),
        ("skip", 1.5 * HOUR, [6, 7]),
        ("once", HOUR, [6, 7]),
    ],
)
def test_missed_fires_follow_the_policy_and_the_grace(misfire, grace, expected):
    task = hourly(call="tests.tasks.test_fleet:nothing", misfire=misfire, misfire_grace=grace)
    base = 1_900_000_800.0 - 1_900_000_800.0 % HOUR  # an hour mark
    found = task.missed_fires(base + 2 * HOUR, until=base + 7.5 * HOUR)
    assert [round((f - base) / HOUR) for f in found] == expected


async def nothing() -> None:
    return None


async def test_memory_records_claim_each_fire_once_and_keep_the_history():
    records = MemoryRecords()
    assert await records.claim("t", RunRecord(10.0, 0.0)) and not await records.claim("t", RunRecord(10.0, 0.0))
    await records.finish("t", RunRecord(5.0, 1.0, "ok"))  # an older fire does not become the latest
    assert (await records.last("t")).fire == 10.0
    assert [r.outcome for r in await records.history("t")] == ["ok"]


async def test_redis_records_hand_each_missed_fire_to_one_claim_of_two_processes(store):
    apps = [App(name="shop", env="test"), App(name="shop", env="test")]
    async with started(first := store(), app=apps[0]), started(second := store(), app=apps[1]):
        a, b = RedisRecords(first, apps[0].namespace), RedisRecords(second, apps[1].namespace)
        await a.finish("t", RunRecord(10.0, 10.0, "ok"))
        won = await asyncio.gather(a.claim("t", RunRecord(20.0, 0.0)), b.claim("t", RunRecord(20.0, 0.0)))
        assert sorted(won) == [False, True]
        assert not await b.claim("t", RunRecord(15.0, 0.0))  # an older fire, once a later one is claimed
        await b.finish("t", RunRecord(5.0, 5.0, "ok"))  # nor does an older run become the latest
        assert (await a.last("t")).fire == 20.0


async def test_a_missed_cron_fire_runs_once_across_two_processes_that_start_together(store, quiet_clock):
    job = Recorder()
    now = time.time()
    last_fire = now - now % HOUR - 3 * HOUR  # three hour marks ago: three fires were missed since
    apps = [App(name="shop", env="test"), App(name="shop", env="test")]
    first = store()
    async with started(first, app=App(name="shop", env="test")):
        await RedisRecords(first, apps[0].namespace).finish("hourly", RunRecord(last_fire, last_fire, "ok"))
    tasks = [hourly(call=job, misfire="once", singleton=False) for _ in apps]
    async with started(store(), tasks[0], app=apps[0]), started(store(), tasks[1], app=apps[1]):
        await wait_until(lambda: job.calls == 1, what="the catch-up run")
        await wait_until(lambda: all(t._catching_up is None or t._catching_up.done() for t in tasks), what="both")
        history = await tasks[0].records.history("hourly")
    assert job.calls == 1
    assert [round((r.fire - last_fire) / HOUR) for r in history] == [3, 0]  # the latest missed, then the old one


async def test_a_singleton_taking_over_from_a_dead_holder_catches_up_its_missed_fire(redis_settings):
    from kaiju.locks.redis import RedisLocks
    from kaiju.redis import RedisConnection

    step = 0.3
    job = Recorder()
    holder, live = App(name="shop", env="test"), App(name="shop", env="test")
    async with started(RedisConnection(**redis_settings(), socket_timeout=3.0), RedisLocks(), app=holder) as dead:
        # the holder ran the fire `ran`, claimed the next two and died before running them
        ran = (math.floor(time.time() / step) + 3) * step
        await RedisRecords(dead.services["redis"], holder.namespace).finish("tick", RunRecord(ran, ran, "ok"))
        for k in (1, 2):
            await dead.services["locks"].acquire(f"_tasks.tick.{round((ran + k * step) * 1000)}", 30, renew=False)
        task = PeriodicTask(name="tick", interval=step, singleton=True, misfire="once", call=job)
        async with started(RedisConnection(**redis_settings(), socket_timeout=3.0), RedisLocks(), task, app=live):

            async def fires() -> list[int]:  # the fires run, in steps from `ran`
                return [round((r.fire - ran) / step) for r in await task.records.history("tick", 100)]

            await wait_until(lambda: fires_have(fires(), {2, 3}), what="the takeover and its catch-up")
            run = await fires()
    assert run.count(2) == 1 and 1 not in run  # the latest fire missed, once; the one before it not
    assert run.count(3) == 1  # the fire the takeover ran


async def fires_have(fires, wanted: set[int]) -> bool:
    return wanted <= set(await fires)


async def test_a_pause_reaches_the_other_process_and_outlives_a_restart(store):
    jobs = [Recorder(), Recorder()]
    apps = [App(name="shop", env="test"), App(name="shop", env="test")]

    def app_services(n: int) -> list:
        return [
            store(),
            PeriodicTask(name="tick", interval=3600, delay=3600, call=jobs[n]),
            Tasks(control_interval=0.02),
        ]

    a, b = app_services(0), app_services(1)
    async with started(*a, app=apps[0]), started(*b, app=apps[1]):
        await a[2].pause_task("tick")
        await wait_until(lambda: b[1].fleet_paused and b[1].status()["next_run"] is None, what="b's task paused")
        (listed,) = await b[2].list_tasks("tick")
        assert listed["paused"] is True
    again = app_services(1)
    async with started(*again, app=App(name="shop", env="test")):
        assert again[1].fleet_paused and again[1].status()["paused"]  # still paused after the restart
        await again[2].resume_task("tick")
        assert not again[1].fleet_paused and again[1].status()["next_run"] is not None


async def test_run_now_is_run_by_one_process_and_recorded_for_all(store):
    job = Recorder()
    apps = [App(name="shop", env="test"), App(name="shop", env="test")]
    a = [store(), PeriodicTask(name="tick", interval=3600, delay=3600, call=job), Tasks(control_interval=0.02)]
    b = [store(), PeriodicTask(name="tick", interval=3600, delay=3600, call=job), Tasks(control_interval=0.02)]
    async with started(*a, app=apps[0]), started(*b, app=apps[1]):
        assert await a[2].run_now("tick") == {"name": "tick", "queued": True}
        await wait_until(lambda: job.calls == 1, what="the run asked for")
        await wait_until(lambda: a[1].runs + b[1].runs == 1 and not (a[1].running or b[1].running), what="its end")
        await asyncio.sleep(0.1)  # a few control ticks: nobody runs it twice
        (run,) = await b[2].history("tick")
    assert job.calls == 1 and run["outcome"] == "ok" and run["process"]


async def test_run_now_without_a_shared_store_runs_here_and_answers_the_outcome():
    job = Recorder(fail=True)
    tasks = Tasks()
    async with started(PeriodicTask(name="tick", interval=3600, delay=3600, call=job), tasks, RPCServer()):
        answer = await tasks.run_now("tick")
        (listed,) = await tasks.list_tasks()
        history = await tasks.history("tick")
    assert answer["queued"] is False and answer["error"] == "ValueError: boom 1"
    assert listed["last"]["outcome"] == "failed" and [r["outcome"] for r in history] == ["failed"]


async def test_fleet_control_is_for_the_system_scope_only():
    tasks, rpc = Tasks(), RPCServer()
    body = b'{"jsonrpc":"2.0","id":1,"method":"tasks.pause","params":{"name":"tick"}}'
    async with started(PeriodicTask(name="tick", interval=3600, delay=3600, call=Recorder()), tasks, rpc):
        for scope in (Scope.GUEST, Scope.USER):
            refused = msgspec.json.decode((await rpc.handle(body, scope=scope, transport="http")).body)
            assert "error" in refused and not tasks.task("tick").status()["paused"]
        done = msgspec.json.decode((await rpc.handle(body, scope=Scope.SYSTEM, transport="http")).body)
    assert done["result"]["paused"] is True
