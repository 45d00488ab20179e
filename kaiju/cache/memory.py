"""In-process cache: for one process, with nothing installed.

Expired values are dropped when read (lazily) and by a sweep every `cleanup_interval`
seconds; past `max_size` values the least recently used one is evicted.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from kaiju.cache.base import Cache
from kaiju.runtime.types import NonNegative, NonNegativeInt

__all__ = ["MemoryCache"]


class MemoryCache(Cache):
    """A cache in this process's memory (see `kaiju.cache.base.Cache` for the API).

    Values are stored encoded, so a caller never shares a mutable object with the cache and
    both backends return the same types.
    """

    max_size: NonNegativeInt = 10_000
    """Most values kept; the least recently used is evicted beyond it (0: no limit)."""
    cleanup_interval: NonNegative = 60.0
    """Seconds between sweeps that drop expired values (0: only when read)."""

    async def _open(self) -> None:
        # key -> (expiry on the loop clock or None, encoded value); order = least recently used first
        self._data: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._now = self._loop.time
        self._sweeper: asyncio.Task | None = None
        if self.cleanup_interval > 0:
            self._sweeper = self._loop.create_task(self._sweep_forever())

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        self._data.clear()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cleanup_interval)
            self.sweep()

    def sweep(self) -> int:
        """Drop every expired value now; return how many were dropped."""
        now = self._now()
        expired = [key for key, (expires, _) in self._data.items() if expires is not None and expires <= now]
        for key in expired:
            del self._data[key]
        return len(expired)

    def __len__(self) -> int:
        return len(self._data)

    def _read(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, data = item
        if expires is not None and expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return data

    def _write(self, key: str, data: bytes, expires: float | None) -> None:
        self._data[key] = (expires, data)
        self._data.move_to_end(key)
        if self.max_size and len(self._data) > self.max_size:
            self._data.popitem(last=False)

    async def _get(self, key: str) -> bytes | None:
        return self._read(key, self._now())

    async def _m_get(self, keys: list[str]) -> list[bytes | None]:
        now = self._now()
        return [self._read(key, now) for key in keys]

    async def _set(self, key: str, data: bytes, ttl: float | None) -> None:
        self._write(key, data, None if ttl is None else self._now() + ttl)

    async def _m_set(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        expires = None if ttl is None else self._now() + ttl
        for key, data in items:
            self._write(key, data, expires)

    async def _m_exists(self, keys: list[str]) -> list[bool]:
        now = self._now()
        found = []
        for key in keys:
            item = self._data.get(key)
            found.append(item is not None and (item[0] is None or item[0] > now))
        return found

    async def _m_delete(self, keys: list[str]) -> None:
        for key in keys:
            self._data.pop(key, None)
