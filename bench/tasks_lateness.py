"""Lateness of scheduled fires: kaiju's CronTask and PeriodicTask beside plain aiomisc.

    python bench/tasks_lateness.py [--fires 30] [--interval 0.1] [--rounds 1] [--redis URL]

Lateness = the time the job starts - the time it was scheduled for (wall clock), over
`--fires` consecutive fires of a `* * * * * *` cron task and of a periodic task, for:

- kaiju CronTask / PeriodicTask (scheduled time: the task's `last_fire`);
- aiomisc CronService (scheduled time: the one aiomisc itself computed, with croniter,
  from the clock when it armed the fire; recorded by a CronCallback doing exactly what
  aiomisc's does) / PeriodicService (scheduled: the end of the previous run + interval,
  since aiomisc sleeps `interval` after each run);
- a bare `loop.call_at` timer on whole seconds and one re-armed every interval: the
  ceiling of this loop and machine;
- with `--redis URL`, kaiju's CronTask and PeriodicTask again with their runs recorded in
  Redis (`store`: the shared last-run record and history every run writes, with
  `misfire: once`), beside the rows without it: the record must not make fires later.

aiomisc's PeriodicService counts each period from the end of the previous run, so its
lateness against its own schedule is small, but that schedule slides by that much every
period (the `drift` column). The like-for-like comparison with kaiju's PeriodicTask, whose
fire times are fixed (start + k * interval), is the row "aiomisc PeriodicService ... on
kaiju's fixed schedule": the same aiomisc fires measured against start + k * interval.
asyncio's selector rounds its timeout up to a whole millisecond, which puts 0-1 ms into
any wall-clock-aligned timer (the ceiling rows).

Each scheduler runs alone, one after the other, in this one process. By default each row
is one run of `--fires` consecutive fires; `--rounds N` splits them into N runs with the
rows of a group taking turns, to spread the load bursts of a shared machine evenly.
Takes about 3 * fires seconds for the whole-second rows.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiomisc.cron import CronCallback
from aiomisc.service.cron import CronService, StoreItem
from aiomisc.service.periodic import PeriodicService

from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
from kaiju.tasks import CronTask, PeriodicTask
from kaiju.testing.services import started


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


async def collect(fires: int, arm: Callable[[Callable[[float, float], None]], Awaitable[Callable[[], Awaitable]]]):
    """Run one scheduler until it has fired `fires` times; (lateness of each fire in ms, fire times)."""
    lateness: list[float] = []
    actual: list[float] = []
    done = asyncio.Event()

    def record(now: float, scheduled: float) -> None:
        if len(lateness) < fires:
            lateness.append((now - scheduled) * 1000)
            actual.append(now)
        if len(lateness) >= fires:
            done.set()

    stop = await arm(record)
    try:
        await asyncio.wait_for(done.wait(), timeout=fires * 3 + 10)
    finally:
        await stop()
    return lateness, actual


def store_services(redis_url: str | None) -> tuple[list, dict]:
    """The services and settings recording a task's runs in Redis (none without a URL)."""
    if redis_url is None:
        return [], {}
    from kaiju.redis import RedisConnection

    return [RedisConnection(url=redis_url)], {"misfire": "once"}


def kaiju_cron(redis_url: str | None = None):
    async def arm(record):
        async def job():
            if task.last_fire is not None:  # else a catch-up of a fire an earlier round's run missed
                record(time.time(), task.last_fire)

        extra, settings = store_services(redis_url)
        task = CronTask(name="bench_cron", cron="* * * * * *", call=job, **settings)
        ctx = started(*extra, task)
        await ctx.__aenter__()
        return lambda: ctx.__aexit__(None, None, None)

    return arm


def kaiju_periodic(interval, redis_url: str | None = None):
    async def arm(record):
        async def job():
            if task.last_fire is not None:  # else a catch-up of a fire an earlier round's run missed
                record(time.time(), task.last_fire)

        extra, settings = store_services(redis_url)
        task = PeriodicTask(name="bench_periodic", interval=interval, call=job, **settings)
        ctx = started(*extra, task)
        await ctx.__aenter__()
        return lambda: ctx.__aexit__(None, None, None)

    return arm


class RecordingCronCallback(CronCallback):
    """aiomisc's CronCallback, remembering the fire time its strategy computed."""

    __slots__ = ("scheduled",)

    def get_next(self, cron, _):  # aiomisc's own get_next, plus the record
        timestamp = datetime.now(UTC).timestamp()
        self.scheduled = cron.get_next(float, timestamp)
        return self.scheduled - timestamp


async def aiomisc_cron(record):
    async def job():
        # the next fire is computed only after this run ends: `scheduled` is this fire's
        record(time.time(), callback.scheduled)

    svc = CronService()
    callback = RecordingCronCallback(job)
    # what CronService.register stores, with the recording callback
    svc._callbacks_storage.add(StoreItem(callback, "* * * * * *", False, ()))
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


def bare_timer(interval, whole_seconds=False):
    async def arm(record):
        loop = asyncio.get_running_loop()
        handle: list[asyncio.TimerHandle] = []
        first = math.floor(time.time()) + 1 if whole_seconds else time.time() + interval
        state = {"next": first}

        def fire():
            now = time.time()
            record(now, state["next"])
            state["next"] += interval
            handle[:] = [loop.call_at(loop.time() + (state["next"] - time.time()), fire)]

        handle.append(loop.call_at(loop.time() + (first - time.time()), fire))

        async def stop():
            handle[0].cancel()

        return stop

    return arm


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=1, help="split each row's fires into this many interleaved runs")
    parser.add_argument("--redis", metavar="URL", help="also measure the tasks with their runs recorded in this Redis")
    args = parser.parse_args()
    n, interval, rounds = args.fires, args.interval, max(1, args.rounds)
    recorded: list[list] = [[], []]
    if args.redis:
        recorded = [
            [('kaiju CronTask "* * * * * *", runs recorded in Redis', 1.0, kaiju_cron(args.redis), False)],
            [
                (
                    f"kaiju PeriodicTask {interval:g} s, runs recorded in Redis",
                    interval,
                    kaiju_periodic(interval, args.redis),
                    False,
                )
            ],
        ]
    groups = [
        [
            ('kaiju CronTask "* * * * * *"', 1.0, kaiju_cron(), False),
            *recorded[0],
            ('aiomisc CronService "* * * * * *"', 1.0, aiomisc_cron, False),
            ("ceiling: bare loop.call_at on whole seconds", 1.0, bare_timer(1.0, whole_seconds=True), False),
        ],
        [
            (f"kaiju PeriodicTask {interval:g} s", interval, kaiju_periodic(interval), False),
            *recorded[1],
            # aiomisc's schedule slides; also measure it against the fixed one kaiju keeps
            (f"aiomisc PeriodicService {interval:g} s, own schedule", interval, aiomisc_periodic(interval), True),
            (f"ceiling: bare loop.call_at {interval:g} s", interval, bare_timer(interval), False),
        ],
    ]
    per_round = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    print(f"lateness, ms: job start - the time it was scheduled for (wall clock); loop: {loop_name()}")
    if rounds == 1:
        print(f"each row: {n} consecutive fires, the rows one after the other")
    else:
        runs = "/".join(map(str, per_round))
        print(
            f"each row: {n} fires taken as {rounds} runs of {runs} consecutive fires, the rows of a group taking turns"
        )
    summed = "" if rounds == 1 else ", summed over the runs"
    print(f"drift, ms: how far the schedule itself slid: (last fire - first fire) - periods between{summed}")
    grid_title = f"aiomisc PeriodicService {interval:g} s, on kaiju's fixed schedule"
    width = max(len(grid_title), *(len(row[0]) for group in groups for row in group))
    print(f"{'':{width}} {'p50':>8} {'p99':>8} {'max':>8} {'drift':>8}")
    for group in groups:
        results: dict[str, tuple[list[float], float]] = {}
        for title, _, _, on_grid in group:
            results[title] = ([], 0.0)
            if on_grid:
                results[grid_title] = ([], float("nan"))
        for fires in per_round:
            for title, period, arm, on_grid in group:
                values, actual = await collect(fires, arm)
                drift = (actual[-1] - actual[0] - (len(actual) - 1) * period) * 1000
                old_values, old_drift = results[title]
                results[title] = (old_values + values, old_drift + drift)
                if on_grid:
                    fixed = [values[0] + (t - actual[0] - k * period) * 1000 for k, t in enumerate(actual)]
                    results[grid_title][0].extend(fixed)
        for title, (values, drift) in results.items():
            p50, p99 = percentile(values, 50), percentile(values, 99)
            shown = "-" if math.isnan(drift) else f"{drift:.3f}"
            print(f"{title:{width}} {p50:8.3f} {p99:8.3f} {max(values):8.3f} {shown:>8}", flush=True)
    print(f"like-for-like with kaiju PeriodicTask (fixed fire times, start + k * {interval:g} s):")
    print(f'  "{grid_title}"')
    print('("own schedule" measures aiomisc against its own sliding schedule: each period')
    print(" counted from the end of the previous run.)")


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory(choose_loop())) as runner:  # the loop kaiju-run would use
        runner.run(main())
