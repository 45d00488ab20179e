"""Singleton tasks: each fire runs in one app only, across apps sharing a Locks service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from kaiju.locks.memory import MemoryLocks
from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.runtime.service import App
from kaiju.tasks import CronTask, PeriodicTask, next_periodic_fire
from kaiju.testing.services import started

from tests.tasks.helpers import record_claims, wait_until

WORKER = str(Path(__file__).with_name("singleton_worker.py"))


def recording_task(name: str, fired: list, **settings):
    async def job():
        fired.append((name, task.last_fire))

    task = PeriodicTask(name="report", interval=0.05, singleton=True, call=job, **settings)
    return task


async def test_two_apps_sharing_memory_locks_run_each_fire_once():
    locks = MemoryLocks()
    a = recording_task("a", [])
    b = recording_task("b", [])
    claimed_a, claimed_b = record_claims(a), record_claims(b)
    b.locks = locks  # the second app uses the first app's Locks instance
    async with started(locks, a, app=App(name="shop", env="test")):
        async with started(b, app=App(name="shop", env="test")):
            await wait_until(lambda: a.runs + b.runs >= 8 and a.elsewhere + b.elsewhere >= 8)
    counts = Counter(claimed_a + claimed_b)
    assert counts and max(counts.values()) == 1, "a fire ran in both apps"
    assert (len(claimed_a), len(claimed_b)) == (a.runs, b.runs)


async def test_singleton_cron_with_memory_locks():
    ran: list[float] = []
    locks = MemoryLocks()

    def make():
        async def job():
            ran.append(task.last_fire)

        task = CronTask(name="tick", cron="* * * * * *", singleton=True, call=job)
        return task

    a, b = make(), make()
    b.locks = locks
    async with started(locks, a):
        async with started(b):
            await wait_until(lambda: len(ran) >= 2, timeout=4)
    assert sorted(set(ran)) == sorted(ran)
    assert a.elsewhere + b.elsewhere >= 1


async def test_fires_are_aligned_so_every_process_sees_the_same_ones():
    locks = MemoryLocks()
    a = recording_task("a", [], delay=0)
    b = recording_task("b", [], delay=0.03)
    b.locks = locks
    async with started(locks, a):
        async with started(b):
            # both wait for a multiple of the interval since the epoch
            for task in (a, b):
                assert round(task._next_base / 0.05, 6) == round(task._next_base / 0.05)


class TTLRecordingLocks(MemoryLocks):
    """MemoryLocks remembering when each lock was asked for and for how long."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked: list[tuple[float, float]] = []  # (time asked, ttl)

    async def acquire(self, key, ttl, *args, **kwargs):
        self.asked.append((time.time(), ttl))
        return await super().acquire(key, ttl, *args, **kwargs)


async def test_a_fire_lock_lasts_past_the_next_fire_by_the_jitter():
    locks = TTLRecordingLocks()
    fires: list[float] = []

    async def job():
        fires.append(task.last_fire)

    task = PeriodicTask(name="jittered", interval=0.1, jitter=0.08, singleton=True, call=job)
    async with started(locks, task):
        await wait_until(lambda: len(fires) >= 3)
    for (asked, ttl), fire in zip(locks.asked, fires):
        # a process whose jitter put it late on this same fire must still find the lock taken
        assert asked + ttl >= fire + 0.1 + 0.08 - 1e-6


@pytest.mark.usefixtures("quiet_clock")
async def test_a_process_held_up_past_a_period_runs_the_latest_fire_not_an_expired_one():
    locks = MemoryLocks()
    ran: list[tuple[str, float]] = []
    hour = 3600.0  # nothing fires by itself during the test (quiet_clock: mid-hour)

    async def job():
        ran.append(("b", b.last_fire))

    a = PeriodicTask(name="report", interval=hour, singleton=True, call=job)
    b = PeriodicTask(name="report", interval=hour, singleton=True, call=job)
    b.locks = locks
    async with started(locks, a):
        async with started(b):
            latest = next_periodic_fire(0.0, hour, time.time() - hour)  # the latest fire due now
            assert await a._claim(latest) is None  # process a ran it on time (claimed it)
            # process b's timer comes for the fire before it: that fire's lock has long expired
            b._timer.cancel()
            b._arm(latest - hour)
            await wait_until(lambda: b.elsewhere + b.runs >= 1)
    assert ran == [] and b.runs == 0, "b ran a fire a had run or given up"
    assert b.elsewhere == 1 and b.misses == 1
    assert b.last_fire == latest


@pytest.mark.usefixtures("quiet_clock")
async def test_a_fire_lock_outlives_the_next_fire_so_a_slow_claim_still_finds_it():
    locks = TTLRecordingLocks()
    hour = 3600.0
    task = PeriodicTask(name="report", interval=hour, singleton=True, call=asyncio.sleep, params=[0])
    async with started(locks, task):
        fire = next_periodic_fire(0.0, hour, time.time() - hour)  # the latest fire due
        assert await task._claim(fire) is None  # claimed
    (asked, ttl), = locks.asked
    assert asked + ttl > task._next_fire(fire) + 5  # well past the next fire, not just up to it


@pytest.mark.usefixtures("quiet_clock")
async def test_a_claim_later_than_any_lock_on_its_fire_lasts_is_skipped():
    locks = MemoryLocks()
    hour = 3600.0
    task = PeriodicTask(name="report", interval=hour, singleton=True, call=asyncio.sleep, params=[0])
    async with started(locks, task):
        stale = next_periodic_fire(0.0, hour, time.time() - hour) - 2 * hour  # its next fire was an hour ago
        assert await task._claim(stale) == "late"
        assert task.misses == 1 and task.elsewhere == 0 and task.failures == 0
        assert not await locks.exists(f"_tasks.report.{round(stale * 1000)}")  # nothing taken: another process may hold it


async def test_redis_singleton_in_two_apps(redis_url):
    a = recording_task("a", [])
    b = recording_task("b", [])
    claimed_a, claimed_b = record_claims(a), record_claims(b)
    async with started(RedisConnection(url=redis_url), RedisLocks(), a):
        async with started(RedisConnection(url=redis_url), RedisLocks(), b):
            await wait_until(lambda: a.runs + b.runs >= 6 and a.elsewhere + b.elsewhere >= 6)
    assert max(Counter(claimed_a + claimed_b).values()) == 1, "a fire ran in both apps"
    assert (len(claimed_a), len(claimed_b)) == (a.runs, b.runs)


async def test_redis_singleton_in_two_processes(redis_url):
    barrier = f"tasks-test-barrier-{uuid.uuid4().hex}"  # both start firing once both are up
    procs = [
        subprocess.Popen([sys.executable, WORKER, redis_url, barrier, "10"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    fires: list[str] = []
    elsewhere = 0
    try:
        for proc in procs:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            assert proc.returncode == 0
            times, counts = out.splitlines()
            fires += times.split()
            runs, other, _ = map(int, counts.split())
            assert runs == len(times.split())
            elsewhere += other
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(fires) >= 10
    assert len(set(fires)) == len(fires), "a fire ran in both processes"
    assert elsewhere >= 1


async def test_a_singleton_fire_with_redis_down_does_not_run_and_counts_as_a_failure():
    from kaiju.testing import RedisServer, eventually

    server = RedisServer(persistent=False)  # its own, so stopping it leaves the shared one alone
    server.start()
    ran: list[float] = []

    async def job() -> None:
        ran.append(1)

    try:
        redis, locks = RedisConnection(url=server.url), RedisLocks()
        async with started(redis, locks):
            server.stop()
            task = PeriodicTask(name="report", interval=0.05, singleton=True, call=job)
            task.locks = locks
            async with started(task):
                await eventually(lambda: task.failures >= 2, timeout=30, what="fires failing to claim their lock")
    finally:
        server.cleanup()
    assert ran == [] and task.runs == 0
    assert "cannot take the singleton lock" in task.last_error
