"""Lateness of scheduled fires: kaiju's CronTask and PeriodicTask beside plain aiomisc.

    python bench/tasks_lateness.py [--fires 30] [--interval 0.1]

Lateness = the time the job starts - the time it was scheduled for (wall clock), over
`--fires` consecutive fires of a `* * * * * *` cron task and of a periodic task, for:

- kaiju CronTask / PeriodicTask (scheduled time: the task's `last_fire`);
- aiomisc CronService (scheduled: the whole second) / PeriodicService (scheduled: the end
  of the previous run + interval, since aiomisc sleeps `interval` after each run);
- a bare `loop.call_at` timer re-armed every interval: the ceiling of this loop and machine.

Each is measured alone, one after the other, in this one process. Takes about
2 * fires seconds for the cron rows.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from aiomisc.service.cron import CronService
from aiomisc.service.periodic import PeriodicService

from kaiju.tasks import CronTask, PeriodicTask
from kaiju.testing.services import started


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


async def collect(fires: int, arm: Callable[[Callable[[float, float], None]], Awaitable[Callable[[], Awaitable]]]) -> list[float]:
    """Run one scheduler until it has fired `fires` times; lateness of each fire in ms."""
    lateness: list[float] = []
    done = asyncio.Event()

    def record(actual: float, scheduled: float) -> None:
        if len(lateness) < fires:
            lateness.append((actual - scheduled) * 1000)
        if len(lateness) >= fires:
            done.set()

    stop = await arm(record)
    try:
        await asyncio.wait_for(done.wait(), timeout=fires * 3 + 10)
    finally:
        await stop()
    return lateness


async def kaiju_cron(record):
    async def job():
        record(time.time(), task.last_fire)

    task = CronTask(name="bench_cron", cron="* * * * * *", call=job)
    ctx = started(task)
    await ctx.__aenter__()
    return lambda: ctx.__aexit__(None, None, None)


def kaiju_periodic(interval):
    async def arm(record):
        async def job():
            record(time.time(), task.last_fire)

        task = PeriodicTask(name="bench_periodic", interval=interval, call=job)
        ctx = started(task)
        await ctx.__aenter__()
        return lambda: ctx.__aexit__(None, None, None)

    return arm


async def aiomisc_cron(record):
    async def job():
        now = time.time()
        record(now, round(now))  # aiomisc fires on whole seconds (UTC)

    svc = CronService()
    svc.register(job, "* * * * * *")
    svc.set_loop(asyncio.get_running_loop())
    await svc.start()
    return svc.stop


def aiomisc_periodic(interval):
    async def arm(record):
        previous_end: list[float] = []

        class Bench(PeriodicService):
            async def callback(self):
                now = time.time()
                if previous_end:  # aiomisc sleeps `interval` after the previous run ended
                    record(now, previous_end[0] + interval)
                previous_end[:] = [time.time()]

        svc = Bench(interval=interval)
        svc.set_loop(asyncio.get_running_loop())
        await svc.start()
        return svc.stop

    return arm


def bare_timer(interval):
    async def arm(record):
        loop = asyncio.get_running_loop()
        handle: list[asyncio.TimerHandle] = []
        state = {"next": time.time() + interval}

        def fire():
            now = time.time()
            record(now, state["next"])
            state["next"] += interval
            handle[:] = [loop.call_at(loop.time() + (state["next"] - time.time()), fire)]

        handle.append(loop.call_at(loop.time() + interval, fire))

        async def stop():
            handle[0].cancel()

        return stop

    return arm


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    n, interval = args.fires, args.interval
    rows = [
        (f'kaiju CronTask "* * * * * *"', kaiju_cron),
        ('aiomisc CronService "* * * * * *"', aiomisc_cron),
        (f"kaiju PeriodicTask {interval:g} s", kaiju_periodic(interval)),
        (f"aiomisc PeriodicService {interval:g} s", aiomisc_periodic(interval)),
        (f"ceiling: bare loop.call_at {interval:g} s", bare_timer(interval)),
    ]
    print(f"lateness of {n} consecutive fires, ms (actual start - scheduled time)")
    print(f"{'':42} {'p50':>8} {'p99':>8} {'max':>8}")
    for title, arm in rows:
        values = await collect(n, arm)
        print(f"{title:42} {percentile(values, 50):8.3f} {percentile(values, 99):8.3f} {max(values):8.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
