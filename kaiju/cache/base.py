"""Cache: the interface every backend implements, and what the backends share.

    await cache.set("user.1", user, ttl=60)          # seconds (float); msgpack-encoded
    user = await cache.get("user.1", type=User)      # decoded into `type` (validated)
    rates = await cache.get_or_set("rates", load_rates, ttl=300)   # one loader call at a time

Values are encoded with msgspec msgpack (`kaiju.cache.values`). Without `type=` a value
comes back with its types: dict, list, str, int, float, bool, None, bytes, UUID, Decimal,
date, datetime (with its time zone) and set; a Struct or dataclass comes back as a dict.
With `type=` (any type msgspec can decode: a Struct, `uuid.UUID`, `Decimal`,
`list[User]`, ...) it comes back validated into that type. Keys are namespaced by the
service: `<env>.<app>._cache.<key>`, or `<env>._shared._cache.<key>` with `shared: true`.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from kaiju import keys
from kaiju.cache.values import ValueCodec
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive

__all__ = ["Cache"]


class Cache(Service, abc.ABC):
    """A key-value cache with TTLs, multi-key calls and single-flight filling."""

    service_name = "cache"

    ttl: Positive | None = None
    """Seconds a value lives when `set()` is given no ttl (None: until deleted or evicted)."""
    shared: bool = False
    """Use the namespace shared by all apps of the env (`<env>._shared._cache`) instead of the app's."""

    # -- lifetime ---------------------------------------------------------

    async def start(self) -> None:
        if self.ttl is not None:
            self._check_ttl(self.ttl)
        namespace = self.app.shared_namespace if self.shared else self.app.namespace
        self._namespace = namespace
        self._prefix = namespace.get_key(keys.CACHE) + "."
        codec = ValueCodec()
        self._encode, self._decode = codec.encode, codec.decode
        self._filling: dict[str, asyncio.Future] = {}
        self._loop = asyncio.get_running_loop()
        self.counts = {"hits": 0, "misses": 0, "loader_calls": 0}  # read by the metrics
        await self._open()
        self._opened = True

    async def stop(self, exception: Exception | None = None) -> None:
        if self.__dict__.pop("_opened", False):  # nothing to close when start() failed
            await self._close()

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
    async def _set(self, key: str, data: bytes, ttl: float | None) -> None: ...

    @abc.abstractmethod
    async def _m_set(self, items: list[tuple[str, bytes]], ttl: float | None) -> None: ...

    @abc.abstractmethod
    async def _m_exists(self, keys: list[str]) -> list[bool]: ...

    @abc.abstractmethod
    async def _m_delete(self, keys: list[str]) -> None: ...

    async def _fill(self, key: str, loader: Callable[[], Any], ttl: float | None) -> bytes:
        """Run `loader` and store its value (one call per key at a time in this service).

        Backends shared between processes override this to take a fill lock.
        """
        data = self._encode(await _call(loader))
        await self._set(key, data, ttl)
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
        return {key: self._decode(data, type) for key, data in zip(keys, found) if data is not None}

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store `value` under `key` for `ttl` seconds (default: the `ttl` setting).

        Raises TypeError when msgpack cannot encode `value`.
        """
        await self._set(self._key(key), self._encode(value), self._ttl(ttl))

    async def m_set(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store every `{key: value}` of `mapping` for `ttl` seconds (default: the `ttl` setting)."""
        if not mapping:
            return
        items = [(self._key(key), self._encode(value)) for key, value in mapping.items()]
        await self._m_set(items, self._ttl(ttl))

    async def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return (await self._m_exists([self._key(key)]))[0]

    async def m_exists(self, keys: Collection[str]) -> frozenset[str]:
        """The subset of `keys` that hold a value."""
        keys = list(keys)
        if not keys:
            return frozenset()
        found = await self._m_exists([self._key(key) for key in keys])
        return frozenset(key for key, present in zip(keys, found) if present)

    async def delete(self, key: str) -> None:
        """Remove `key` (nothing happens when it is missing)."""
        await self._m_delete([self._key(key)])

    async def m_delete(self, keys: Collection[str]) -> None:
        """Remove every key of `keys`."""
        keys = [self._key(key) for key in keys]
        if keys:
            await self._m_delete(keys)

    async def get_or_set(
        self, key: str, loader: Callable[[], Awaitable[Any] | Any], ttl: float | None = None, *, type: Any = None
    ) -> Any:
        """The value of `key`; on a miss, `await loader()`, store its result for `ttl` and return it.

        Single-flight: while a loader runs for `key`, other callers in this service wait for
        its result instead of calling their own (and with Redis, callers in other processes
        wait too, through a short fill lock). A loader's exception reaches every waiter and
        nothing is stored.
        """
        full = self._key(key)
        ttl = self._ttl(ttl)
        data = await self._get(full)
        self.counts["misses" if data is None else "hits"] += 1
        while data is None:
            filling = self._filling.get(full)
            if filling is not None:
                try:
                    data = await asyncio.shield(filling)
                except asyncio.CancelledError:
                    if filling.cancelled():
                        continue  # the caller running the loader was cancelled: take over
                    raise
                continue
            filling = self._filling[full] = self._loop.create_future()
            self.counts["loader_calls"] += 1
            try:
                data = await self._fill(full, loader, ttl)
            except asyncio.CancelledError:
                filling.cancel()
                raise
            except BaseException as exc:
                filling.set_exception(exc)
                filling.exception()  # retrieved: no warning when nobody else waited
                raise
            else:
                filling.set_result(data)
            finally:
                del self._filling[full]
        return self._decode(data, type)

    # -- helpers ----------------------------------------------------------

    def _key(self, key: str) -> str:
        if type(key) is not str or not key:
            raise ValueError(f"a cache key must be a non-empty string, got {key!r}")
        return self._prefix + key

    def _ttl(self, ttl: float | None) -> float | None:
        if ttl is None:
            return self.ttl
        return self._check_ttl(ttl)

    @staticmethod
    def _check_ttl(ttl: float) -> float:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        return float(ttl)


async def _call(loader: Callable[[], Awaitable[Any] | Any]) -> Any:
    value = loader()
    if inspect.isawaitable(value):
        value = await value
    return value
