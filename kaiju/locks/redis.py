"""Locks on Redis: for many processes on many hosts.

Each operation is one Lua script, so it is atomic on the server:

- acquire: `SET key id NX PX ttl`, and on success `INCR` of the key's fencing counter;
  on failure it returns the holder's remaining TTL, so a waiter never sleeps past it;
- release: delete the key only if it still holds our id (compare-and-delete);
- renew: `PEXPIRE` the key only if it still holds our id (compare-and-pexpire).

Waiters retry with jittered exponential backoff (`wait_min` doubling up to `wait_max`),
and are woken at once when a lock is released by this same service. An acquire cancelled
while its script is on the server releases what the script may have taken.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from kaiju import keys
from kaiju.locks.base import LockExistsError, Locks, LockTimeout
from kaiju.lua import LOCK_ACQUIRE, LOCK_RELEASE, LOCK_RENEW
from kaiju.redis import RedisConnection

__all__ = ["RedisLocks"]


class RedisLocks(Locks):
    """Locks in Redis (see `kaiju.locks.base.Locks` for the API); needs a `RedisConnection`.

    Fencing tokens come from one counter per namespace, `{<ns>._lock}_fence` (never expired):
    a token grows with every acquisition of any key, hence with every acquisition of a given
    key, and locks on ever-new keys (one per task run) leave no counter behind. The counter
    and every lock of the namespace share a hash tag, hence one Redis Cluster slot.
    """

    redis: RedisConnection

    wait_min: float = 0.005
    """Seconds of the first wait between attempts on a taken lock."""
    wait_max: float = 0.25
    """Longest wait between attempts (the wait doubles up to this, with random jitter)."""

    async def _open(self) -> None:
        self._batch = self.redis.batch  # scripts of concurrent callers share a round trip
        self.fence_key = keys.tag(self._namespace.get_key(keys.LOCK)) + keys.LOCK_FENCE
        # a shared key's tokens come from the shared namespace's counter, which every app uses
        self.shared_fence_key = keys.tag(self.app.shared_namespace.get_key(keys.LOCK)) + keys.LOCK_FENCE
        self._released: dict[str, list[asyncio.Future]] = {}
        self._giving_back: set[asyncio.Task] = set()

    async def _close(self) -> None:
        if self._giving_back:
            await asyncio.wait(self._giving_back, timeout=5)
        for waiters in self._released.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        self._released.clear()

    async def _eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Run `script` (by its SHA, loaded first if the server does not know it)."""
        return await self._batch.run_script(script, keys_and_args[:numkeys], keys_and_args[numkeys:])

    async def _acquire(self, key: str, lock_id: str, ttl: float, wait: bool, timeout: float | None) -> int:
        fence_key = self.shared_fence_key if key.startswith(self._shared_prefix) else self.fence_key
        px = int(ttl * 1000) or 1
        loop = self._loop
        deadline = None if timeout is None else loop.time() + timeout
        delay = self.wait_min
        while True:
            result = await self._attempt(key, fence_key, lock_id, px)
            if result > 0:
                return result
            if not wait:
                raise LockExistsError(f"lock {key!r} is taken")
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise LockTimeout(f"lock {key!r} not acquired within {timeout}s")
            sleep = random.uniform(delay / 2, delay)
            if result < 0:
                sleep = min(sleep, -result / 1000)  # no later than the holder's expiry
            if deadline is not None:
                sleep = min(sleep, deadline - now)
            await self._sleep_until_released(key, sleep)
            self._check_running()  # stop() wakes waiters to give up
            delay = min(delay * 2, self.wait_max)

    async def _attempt(self, key: str, fence_key: str, lock_id: str, px: int) -> int:
        """One run of the acquire script. A caller cancelled while the script is on its way
        does not stop it on the server: a lock it takes then is released, not left to expire."""
        attempt = asyncio.ensure_future(self._eval(LOCK_ACQUIRE, 2, key, fence_key, lock_id, px))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda done: self._give_back(done, key, lock_id))
            raise

    def _give_back(self, attempt: asyncio.Future, key: str, lock_id: str) -> None:
        if attempt.cancelled() or attempt.exception() is not None or attempt.result() <= 0:
            return
        task = asyncio.ensure_future(self._eval(LOCK_RELEASE, 1, key, lock_id))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _sleep_until_released(self, key: str, seconds: float) -> None:
        """Sleep `seconds`, or less if this service releases `key` meanwhile."""
        fut = self._loop.create_future()
        waiters = self._released.setdefault(key, [])
        waiters.append(fut)
        try:
            async with asyncio.timeout(seconds):
                await fut
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()
            if fut in waiters:  # also when the timeout cancelled it: a long wait must not pile them up
                waiters.remove(fut)
                if not waiters and self._released.get(key) is waiters:
                    del self._released[key]

    async def _release(self, key: str, lock_id: str) -> bool:
        released = await self._eval(LOCK_RELEASE, 1, key, lock_id) == 1
        if released:
            waiters = self._released.pop(key, None)
            if waiters:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
        return released

    async def _renew(self, key: str, lock_id: str, ttl: float) -> bool:
        return await self._eval(LOCK_RENEW, 1, key, lock_id, int(ttl * 1000) or 1) == 1

    async def _owners(self, keys: list[str]) -> list[str | None]:
        values = await self._batch.execute_command("MGET", *keys)  # one namespace: one slot
        return [None if value is None else value.decode() for value in values]
