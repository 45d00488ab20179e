"""A process running a singleton task on Redis locks (run by tests/tasks/test_singleton.py).

    python singleton_worker.py URL SECONDS    run a 0.1 s singleton task for SECONDS and print
                                              the fire times it ran, then "runs elsewhere misses"
"""

from __future__ import annotations

import asyncio
import sys

from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.tasks import PeriodicTask
from kaiju.testing.services import started


async def main(url: str, seconds: str) -> None:
    fired: list[float] = []

    async def job() -> None:
        fired.append(task.last_fire)

    task = PeriodicTask(name="once", interval=0.1, singleton=True, call=job)
    async with started(RedisConnection(url=url), RedisLocks(), task):
        await asyncio.sleep(float(seconds))
    print(" ".join(f"{f:.3f}" for f in fired), flush=True)
    print(task.runs, task.elsewhere, task.misses, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
