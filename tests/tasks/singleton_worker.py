"""A process running a singleton task on Redis locks (run by tests/tasks/test_singleton.py).

    python singleton_worker.py URL BARRIER FIRES

Starts its Redis locks, then waits at the barrier (the Redis counter BARRIER, until as
many processes as its PROCESSES suffix says have arrived), then runs a 0.1 s singleton
task until it has seen FIRES fires (run here or elsewhere). Prints the fire times it ran,
then "runs elsewhere misses". Exits 3 when the others never arrive.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.tasks import PeriodicTask
from kaiju.testing.services import started

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make `tests` importable
from tests.tasks.helpers import record_claims  # noqa: E402

PROCESSES = 2
WAIT = 30.0  # seconds, the bound of each wait


async def main(url: str, barrier: str, fires: str) -> int:
    async def job() -> None:
        pass

    task = PeriodicTask(name="once", interval=0.1, singleton=True, call=job)
    ran = record_claims(task)  # the fire of each run (task.last_fire in the job may be the next one)
    redis, locks = RedisConnection(url=url), RedisLocks()
    async with started(redis, locks):
        await redis.client.incr(barrier)
        try:
            async with asyncio.timeout(WAIT):
                while int(await redis.client.get(barrier)) < PROCESSES:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return 3
        task.locks = locks
        async with started(task):
            async with asyncio.timeout(WAIT):
                while task.runs + task.elsewhere < int(fires):
                    await asyncio.sleep(0.01)
    print(" ".join(f"{f:.3f}" for f in ran), flush=True)
    print(task.runs, task.elsewhere, task.misses, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
