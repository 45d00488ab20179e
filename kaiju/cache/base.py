"""Cache: the interface every backend implements, and what the backends share.

    await cache.set("user.1", user, ttl=60)          # seconds (float); msgpack-encoded
    user = await cache.get("user.1", type=User)      # decoded into `type` (validated)
    rates = await cache.get_or_set("rates", load_rates, ttl=300)   # one loader call at a time
    await cache.set("login.1", state, ttl=300, keep=True)          # never evicted to make room

Values are encoded with msgspec msgpack (`kaiju.cache.values`). Without `type=` a value
comes back with its types: dict, list, str, int, float, bool, None, bytes, UUID, Decimal,
date, datetime (with its time zone) and set; a Struct or dataclass comes back as a dict.
With `type=` (any type msgspec can decode: a Struct, `uuid.UUID`, `Decimal`,
`list[User]`, ...) it comes back validated into that type. Keys are namespaced by the
service: `<env>.<app>._cache.<key>`, or `<env>._shared._cache.<key>` with `shared: true`.

A value written with `keep=True` (security state: sessions, login throttles, token
families) expires with its TTL but is never evicted to make room for others: a guest who
fills the cache with new keys cannot push a logged-in user's session or a lockout out of
it. Such a value needs a TTL.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any

from kaiju import keys
from kaiju.cache.values import ValueCodec
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive
from kaiju.telemetry.detail import trace_calls
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = ["Cache"]


# the calls to the store that `detail: full` traces (kaiju.telemetry.detail)
_STORE_CALLS = ("_get", "_m_get", "_set", "_m_set", "_add", "_m_exists", "_m_delete")


class Cache(Service, abc.ABC):
    """A key-value cache with TTLs, multi-key calls and single-flight filling."""

    service_name = "cache"

    ttl: Positive | None = None
    """Seconds a value lives when `set()` is given no ttl (None: until deleted or evicted)."""
    shared: bool = False
    """Use the namespace shared by all apps of the env (`<env>._shared._cache`) instead of the app's."""
    telemetry: Telemetry | None = None
    """The `Telemetry` which, with `detail: full`, makes a span of each call to the store."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.counts = {"hits": 0, "misses": 0, "loader_calls": 0}

    # -- lifetime ---------------------------------------------------------

    async def start(self) -> None:
        if self.ttl is not None:
            self._check_ttl(self.ttl)
        namespace = self.app.shared_namespace if self.shared else self.app.namespace
        self._namespace = namespace
        self._prefix = namespace.get_key(keys.CACHE) + "."
        codec = ValueCodec()
        self._encode, self._decode = codec.encode, codec.decode
        self._filling: dict[str, asyncio.Task[bytes]] = {}
        self._loop = asyncio.get_running_loop()
        self.counts = {"hits": 0, "misses": 0, "loader_calls": 0}  # since this start, read by the metrics
        trace_calls(self, tracing_of(self.telemetry), "cache", _STORE_CALLS)
        await self._open()
        self._opened = True

    async def stop(self, exception: Exception | None = None) -> None:
        if self.__dict__.pop("_opened", False):  # nothing to close when start() failed
            await self._close()

    def metrics(self) -> Iterator[Any]:
        """Hits, misses and loader calls (`get_or_set` fills) of this cache since it started."""
        from prometheus_client.core import CounterMetricFamily

        counts = self.counts
        for key, name, doc in (
            ("hits", "kaiju_cache_hits", "Cache reads that found the key"),
            ("misses", "kaiju_cache_misses", "Cache reads that did not find the key"),
            ("loader_calls", "kaiju_cache_loader_calls", "get_or_set loader runs"),
        ):
            family = CounterMetricFamily(name, doc, labels=["cache"])
            family.add_metric([self.name], counts[key])
            yield family

    async def _open(self) -> None:
        """Backend set-up at start."""

    async def _close(self) -> None:
        """Backend tear-down at stop."""

    # -- backend primitives (full keys, encoded values, ttl in seconds or None) --

    @abc.abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def _m_get(self, keys: list[str]) -> list[bytes | None]: ...

    @abc.abstractmethod
    async def _set(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> None: ...

    @abc.abstractmethod
    async def _m_set(self, items: list[tuple[str, bytes]], ttl: float | None, keep: bool = False) -> None: ...

    @abc.abstractmethod
    async def _add(self, key: str, data: bytes, ttl: float | None, keep: bool = False) -> bool: ...

    @abc.abstractmethod
    async def _m_exists(self, keys: list[str]) -> list[bool]: ...

    @abc.abstractmethod
    async def _m_delete(self, keys: list[str]) -> None: ...

    async def _fill(self, key: str, loader: Callable[[], Any], ttl: float | None, keep: bool = False) -> bytes:
        """Run `loader` and store its value (one call per key at a time in this service).

        Backends shared between processes override this to take a fill lock.
        """
        data = self._encode(await _call(loader))
        await self._set(key, data, ttl, keep)
        return data

    # -- public API -------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The namespaced key under which `key` is stored."""
        return self._key(key)

    async def get(self, key: str, *, type: Any = None) -> Any:
        """The value of `key` (decoded into `type` when given), or None when missing or expired.

        Raises msgspec.ValidationError when the stored value does not fit `type`.
        """
        data = await self._get(self._key(key))
        self.counts["misses" if data is None else "hits"] += 1
        return None if data is None else self._decode(data, type)

    async def m_get(self, keys: Collection[str], *, type: Any = None) -> dict[str, Any]:
        """The values of those `keys` that are present, as `{key: value}`."""
        keys = list(keys)
        if not keys:
            return {}
        found = await self._m_get([self._key(key) for key in keys])
        hits = len(found) - found.count(None)
        self.counts["hits"] += hits
        self.counts["misses"] += len(found) - hits
        return {key: self._decode(data, type) for key, data in zip(keys, found, strict=True) if data is not None}

    async def set(self, key: str, value: Any, ttl: float | None = None, *, keep: bool = False) -> None:
        """Store `value` under `key` for `ttl` seconds (default: the `ttl` setting); with `keep`,
        never evict it to make room (it needs a TTL).

        Raises TypeError when msgpack cannot encode `value`, ValueError for `keep` without a TTL.
        """
        await self._set(self._key(key), self._encode(value), self._ttl(ttl, keep), keep)

    async def m_set(self, mapping: Mapping[str, Any], ttl: float | None = None, *, keep: bool = False) -> None:
        """Store every `{key: value}` of `mapping` for `ttl` seconds (default: the `ttl` setting);
        `keep` as for `set`."""
        if not mapping:
            return
        items = [(self._key(key), self._encode(value)) for key, value in mapping.items()]
        await self._m_set(items, self._ttl(ttl, keep), keep)

    async def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return (await self._m_exists([self._key(key)]))[0]

    async def m_exists(self, keys: Collection[str]) -> frozenset[str]:
        """The subset of `keys` that hold a value."""
        keys = list(keys)
        if not keys:
            return frozenset()
        found = await self._m_exists([self._key(key) for key in keys])
        return frozenset(key for key, present in zip(keys, found, strict=True) if present)

    async def delete(self, key: str) -> None:
        """Remove `key` (nothing happens when it is missing)."""
        await self._m_delete([self._key(key)])

    async def m_delete(self, keys: Collection[str]) -> None:
        """Remove every key of `keys`."""
        keys = [self._key(key) for key in keys]
        if keys:
            await self._m_delete(keys)

    async def add(self, key: str, value: Any, ttl: float | None = None, *, keep: bool = False) -> bool:
        """Store `value` under `key` only when the key holds no value; True when it was stored.
        One caller wins however many race for a key (across processes too with Redis).
        `ttl` and `keep` as for `set`."""
        return await self._add(self._key(key), self._encode(value), self._ttl(ttl, keep), keep)

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any] | Any],
        ttl: float | None = None,
        *,
        type: Any = None,
        keep: bool = False,
    ) -> Any:
        """The value of `key`; on a miss, `await loader()`, store its result for `ttl` and return it
        (`keep` as for `set`).

        Single-flight: while a loader runs for `key`, other callers in this service wait for
        its result instead of calling their own (and with Redis, callers in other processes
        wait too, through a short fill lock). The loader runs as work of its own, shared by
        its waiters: a waiter that is cancelled (its deadline, a dropped connection) leaves
        it running for the others, and its value is stored even when nobody waits any more.
        A loader's exception reaches every waiter and nothing is stored.
        """
        full = self._key(key)
        ttl = self._ttl(ttl, keep)
        data = await self._get(full)
        self.counts["misses" if data is None else "hits"] += 1
        if data is None:
            filling = self._filling.get(full)
            if filling is None:
                self.counts["loader_calls"] += 1
                filling = self._filling[full] = self._loop.create_task(self._fill_shared(full, loader, ttl, keep))
                filling.add_done_callback(_retrieved)
            data = await _shared(filling, key)
        return self._decode(data, type)

    async def _fill_shared(self, full: str, loader: Callable[[], Any], ttl: float | None, keep: bool) -> bytes:
        try:
            return await self._fill(full, loader, ttl, keep)
        finally:
            del self._filling[full]

    # -- helpers ----------------------------------------------------------

    def _key(self, key: str) -> str:
        if type(key) is not str or not key:
            raise ValueError(f"a cache key must be a non-empty string, got {key!r}")
        return self._prefix + key

    def _ttl(self, ttl: float | None, keep: bool = False) -> float | None:
        ttl = self.ttl if ttl is None else self._check_ttl(ttl)
        if keep and ttl is None:
            raise ValueError("a value kept from eviction (keep=True) needs a ttl")
        return ttl

    @staticmethod
    def _check_ttl(ttl: float) -> float:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        return float(ttl)


async def _shared(filling: asyncio.Task[bytes], key: str) -> bytes:
    """The value a shared loader task makes, awaited so that the waiter's cancellation leaves
    the task running for the others; a loader that ended by cancellation itself (not the
    waiter) is reported as an error, never as the waiter's own cancellation."""
    try:
        return await asyncio.shield(filling)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if filling.cancelled() and (task is None or not task.cancelling()):
            raise RuntimeError(f"the loader of cache key {key!r} was cancelled") from None
        raise


def _retrieved(task: asyncio.Task) -> None:
    """Mark a loader task's exception as seen: its waiters got it, or nobody waited any more."""
    if not task.cancelled():
        task.exception()


async def _call(loader: Callable[[], Awaitable[Any] | Any]) -> Any:
    value = loader()
    if inspect.isawaitable(value):
        value = await value
    return value
