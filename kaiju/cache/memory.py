"""In-process cache: for one process, with nothing installed.

Expired values are dropped when read (lazily) and by a sweep every `cleanup_interval`
seconds; past `max_size` values the least recently used one is evicted. Values written with
`keep=True` (sessions, login throttles, token families) live in a store of their own that
`max_size` does not bound: they go only when they expire or are deleted.
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
        # the values written with keep=True: never evicted, always with an expiry
        self._kept: dict[str, tuple[float, bytes]] = {}
        self._now = self._loop.time
        self._sweeper: asyncio.Task | None = None
        if self.cleanup_interval > 0:
            self._sweeper = self._loop.create_task(self._sweep_forever())

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        self._data.clear()
        self._kept.clear()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cleanup_interval)
            self.sweep()

    def sweep(self) -> int:
        """Drop every expired value now; return how many were dropped."""
        now = self._now()
        dropped = 0
        for store in (self._data, self._kept):
            expired = [key for key, (expires, _) in store.items() if expires is not None and expires <= now]
            for key in expired:
                del store[key]
            dropped += len(expired)
        return dropped

    def __len__(self) -> int:
        return len(self._data) + len(self._kept)

    def _read(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            kept = self._kept.get(key)
            if kept is None:
                return None
            if kept[0] <= now:
                del self._kept[key]
                return None
            return kept[1]
        expires, data = item
        if expires is not None and expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return data

    def _write(self, key: str, data: bytes, expires: float | None, keep: bool = False) -> None:
        if keep:
            self._data.pop(key, None)
            self._kept[key] = (expires, data)  # type: ignore[assignment]  # keep=True always has a ttl
            return
        self._kept.pop(key, None)
        self._data[key] = (expires, data)
        self._data.move_to_end(key)
        if self.max_size and len(self._data) > self.max_size:
            self._data.popitem(last=False)

    async def _get(self, key: str) -> bytes | None:
        return self._read(key, self._now())

    async def _m_get(self, keys: list[str]) -> list[bytes | None]:
        now = self._now()
        return [self._read(key, now) for key in keys]

    async def _set(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> None:
        self._write(key, data, None if ttl is None else self._now() + ttl, keep)

    async def _m_set(self, items: list[tuple[str, bytes]], ttl: float | None, keep: bool = False) -> None:
        expires = None if ttl is None else self._now() + ttl
        for key, data in items:
            self._write(key, data, expires, keep)

    async def _add(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> bool:
        now = self._now()
        if self._read(key, now) is not None:
            return False
        self._write(key, data, None if ttl is None else now + ttl, keep)
        return True

    async def _m_exists(self, keys: list[str]) -> list[bool]:
        now = self._now()
        # a read in all but the value: a key in use is the most recently used one
        return [self._read(key, now) is not None for key in keys]

    async def _m_delete(self, keys: list[str]) -> None:
        for key in keys:
            self._data.pop(key, None)
            self._kept.pop(key, None)
