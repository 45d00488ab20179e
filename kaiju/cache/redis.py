"""Cache on Redis: for many processes on many hosts.

One command per call: `GET`, `MGET`, `SET ... PX`, `SET ... NX` (`add`), `EXISTS`, `DEL`; multi-key writes
with a TTL are one `SET` per key (`MSET` when there is none). Commands go through the
connection's auto-pipeline, so concurrent calls share a round trip. `get_or_set()` takes a short
fill lock (`SET <ns>._cache_fill.<key> NX PX`) so that one process at a time runs the
loader for a key while the others wait for its value.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

from kaiju import keys
from kaiju.cache.base import Cache, _call
from kaiju.lua import LOCK_RELEASE
from kaiju.redis import RedisConnection

__all__ = ["RedisCache"]


class RedisCache(Cache):
    """A cache in Redis (see `kaiju.cache.base.Cache` for the API); needs a `RedisConnection`."""

    redis: RedisConnection

    fill_lock_ttl: float = 10.0
    """Seconds a `get_or_set()` fill lock lives: a loader slower than this may run twice at once."""
    fill_wait_max: float = 0.1
    """Longest wait between looks for a value another process is loading."""

    def _key(self, key: str) -> str:
        # hash-tagged, so the value and its fill lock share a Cluster slot (kaiju.keys)
        super()._key(key)  # checks the key
        return keys.tagged(self._prefix, key)

    async def _open(self) -> None:
        self._batch = self.redis.batch
        self._cluster = self.redis.mode == "cluster"
        self._fill_prefix = self._namespace.get_key(keys.CACHE_FILL) + "."

    # each command goes through the connection's AutoPipeline: concurrent callers share a
    # round trip. On a Cluster, multi-key calls become one command per key (keys of
    # different slots), which the cluster pipeline sends to each node at once.

    async def _get(self, key: str) -> bytes | None:
        return await self._batch.execute_command("GET", key)

    async def _m_get(self, keys: list[str]) -> list[bytes | None]:
        if self._cluster and len(keys) > 1:
            return list(await asyncio.gather(*[self._batch.execute_command("GET", key) for key in keys]))
        return await self._batch.execute_command("MGET", *keys)

    def _set_command(self, key: str, data: bytes, ttl: float | None) -> asyncio.Future:
        if ttl is None:
            return self._batch.execute_command("SET", key, data)
        return self._batch.execute_command("SET", key, data, "PX", int(ttl * 1000) or 1)

    # `keep` asks that a value not be evicted to make room: Redis evicts only under a
    # `maxmemory-policy` other than noeviction, which an app keeping sessions here must not set
    async def _set(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> None:
        await self._set_command(key, data, ttl)

    async def _add(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> bool:
        if ttl is None:
            return bool(await self._batch.execute_command("SET", key, data, "NX"))
        return bool(await self._batch.execute_command("SET", key, data, "NX", "PX", int(ttl * 1000) or 1))

    async def _m_set(self, items: list[tuple[str, bytes]], ttl: float | None, keep: bool = False) -> None:
        if ttl is None and not self._cluster:
            await self._batch.execute_command("MSET", *[part for item in items for part in item])
            return
        await asyncio.gather(*[self._set_command(key, data, ttl) for key, data in items])

    async def _m_exists(self, keys: list[str]) -> list[bool]:
        if len(keys) == 1:
            return [await self._batch.execute_command("EXISTS", keys[0]) == 1]
        counts = await asyncio.gather(*[self._batch.execute_command("EXISTS", key) for key in keys])
        return [count == 1 for count in counts]

    async def _m_delete(self, keys: list[str]) -> None:
        if self._cluster and len(keys) > 1:
            await asyncio.gather(*[self._batch.execute_command("DEL", key) for key in keys])
        else:
            await self._batch.execute_command("DEL", *keys)

    async def _fill(self, key: str, loader: Callable[[], Any], ttl: float | None, keep: bool = False) -> bytes:
        lock_key = self._fill_prefix + key[len(self._prefix) :]
        token = uuid.uuid4().hex
        lock_px = int(self.fill_lock_ttl * 1000) or 1
        delay = 0.005
        while True:
            if await self._batch.execute_command("SET", lock_key, token, "NX", "PX", lock_px):
                try:
                    data = await self._get(key)  # filled while we waited for the lock?
                    if data is None:
                        data = self._encode(await _call(loader))
                        await self._set(key, data, ttl)
                    return data
                finally:
                    await self._batch.run_script(LOCK_RELEASE, [lock_key], [token])
            # another process is loading: wait for its value, or for its lock to go
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.fill_wait_max)
            data = await self._get(key)
            if data is not None:
                return data
