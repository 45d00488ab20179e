"""In-process locks: for one process, with nothing installed.

Waiters sleep on a future of their own and are woken by a release, or at the moment
the holder's TTL runs out; nothing polls.
"""

from __future__ import annotations

import asyncio
from collections import deque

from kaiju.locks.base import LockExistsError, Locks, LockTimeout

__all__ = ["MemoryLocks"]


class _Entry:
    __slots__ = ("id", "expires")

    def __init__(self, lock_id: str, expires: float):
        self.id = lock_id
        self.expires = expires


class MemoryLocks(Locks):
    """Locks held in this process's memory (see `kaiju.locks.base.Locks` for the API).

    Fencing tokens come from one counter for all keys, from 1 for the life of the service.
    """

    async def _open(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._fence = 0  # one counter for all keys: no per-key state outlives a lock
        self._purge_at = 1024
        self._waiters: dict[str, deque[asyncio.Future]] = {}

    async def _close(self) -> None:
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        self._entries.clear()

    def _take(self, key: str, lock_id: str, ttl: float) -> int:
        """The fencing token if `key` was free (now taken), else 0."""
        now = self._loop.time()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            return 0
        self._fence += 1
        self._entries[key] = _Entry(lock_id, now + ttl)
        if len(self._entries) >= self._purge_at:
            self._purge(now)
        return self._fence

    def _purge(self, now: float) -> None:
        """Forget expired locks nobody waits for (locks on ever-new keys would pile up)."""
        expired = [k for k, e in self._entries.items() if e.expires <= now and k not in self._waiters]
        for key in expired:
            del self._entries[key]
        self._purge_at = max(1024, 2 * len(self._entries))

    def _wake(self, key: str) -> None:
        """Wake the first live waiter on `key`."""
        waiters = self._waiters.get(key)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break
        if waiters is not None and not waiters:
            del self._waiters[key]

    async def _acquire(self, key: str, lock_id: str, ttl: float, wait: bool, timeout: float | None) -> int:
        token = self._take(key, lock_id, ttl)
        if token:
            return token
        if not wait:
            raise LockExistsError(f"lock {key!r} is taken")
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            entry = self._entries[key]
            until = entry.expires if deadline is None else min(entry.expires, deadline)
            fut = self._loop.create_future()
            self._waiters.setdefault(key, deque()).append(fut)
            try:
                async with asyncio.timeout_at(until):
                    await fut
            except TimeoutError:
                pass  # the holder's TTL or our deadline ran out: look again
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake(key)  # pass on the wake-up we will not use
                raise
            finally:
                if not fut.done():
                    fut.cancel()
                    waiters = self._waiters.get(key)
                    if waiters is not None:
                        waiters.remove(fut)
                        if not waiters:
                            del self._waiters[key]
            self._check_running()  # stop() wakes waiters to give up
            token = self._take(key, lock_id, ttl)
            if token:
                return token
            if deadline is not None and self._loop.time() >= deadline:
                raise LockTimeout(f"lock {key!r} not acquired within {timeout}s")

    async def _release(self, key: str, lock_id: str) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.id != lock_id or entry.expires <= self._loop.time():
            return False
        del self._entries[key]
        self._wake(key)
        return True

    async def _renew(self, key: str, lock_id: str, ttl: float) -> bool:
        entry = self._entries.get(key)
        now = self._loop.time()
        if entry is None or entry.id != lock_id or entry.expires <= now:
            return False
        entry.expires = now + ttl
        return True

    async def _owners(self, keys: list[str]) -> list[str | None]:
        now = self._loop.time()
        owners: list[str | None] = []
        for key in keys:
            entry = self._entries.get(key)
            owners.append(entry.id if entry is not None and entry.expires > now else None)
        return owners
