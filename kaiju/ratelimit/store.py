"""Where GCRA times are kept: `MemoryRates` (this process) or `RedisRates` (every process of
the app, on the Redis server's clock), and `RateLimiter`, one rule over one of them.

A store's `take(key, interval, tolerance)` counts one call: None when it is allowed, else
the seconds to wait. `MemoryRates.take` answers at once (no await: the RPC middleware calls
it on every limited call); `RedisRates.take` is a coroutine, one script on one key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kaiju import keys
from kaiju.ratelimit.rate import RateLimit, gcra

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.redis import RedisConnection
    from kaiju.rpc.context import RequestContext
    from kaiju.runtime.service import Namespace

__all__ = ["MemoryRates", "RateLimiter", "RateStore", "RedisRates", "rate_key"]

_monotonic = time.monotonic
_SWEEP_EVERY = 60.0  # seconds between sweeps of subjects whose time is past (memory stays bounded)
_KEYS_KEPT = 4096  # keys a limiter remembers by subject before it starts over


def _safe(text: str) -> str:
    """`text` as a key part: itself when short and plain, else a digest (no `{` or `}` may
    break the hash tag, no long subject may make a long key)."""
    if len(text) <= 64 and text.isprintable() and "{" not in text and "}" not in text:
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rate_key(namespace: Namespace, limiter: str, subject: str) -> str:
    """`{<ns>._rate.<limiter>.<subject>}`: one key, one slot, per limiter and subject."""
    return keys.tag(namespace.get_key(keys.RATE, _safe(limiter), _safe(subject)))


class MemoryRates:
    """GCRA times in this process's memory (monotonic clock), forgotten once past."""

    shared = False

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._sweep_at = 0.0

    def take(self, key: str, interval: float, tolerance: float) -> float | None:
        """Count one call on `key`: None when allowed, else the seconds to wait."""
        now = _monotonic()
        if now >= self._sweep_at:
            self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
            self._sweep_at = now + _SWEEP_EVERY
        tat, wait = gcra(self._tat.get(key, now), now, interval, tolerance)
        if wait:
            return wait
        self._tat[key] = tat
        return None

    def __len__(self) -> int:
        return len(self._tat)


class RedisRates:
    """GCRA times in Redis, shared by every process of the app, on the server's clock.

    When Redis cannot be reached a call is counted in this process instead (`MemoryRates`):
    limits hold per process until the server is back, and no call fails for the limiter.
    """

    shared = True

    def __init__(self, redis: RedisConnection, logger: Any = None):
        from kaiju.lua import RATE_TAKE

        self.redis = redis
        self.logger = logger
        self._script = redis.client.register_script(RATE_TAKE)
        self._fallback = MemoryRates()
        self._warned = 0.0

    async def take(self, key: str, interval: float, tolerance: float) -> float | None:
        """Count one call on `key`: None when allowed, else the seconds to wait."""
        from redis.exceptions import RedisError

        try:
            wait = await self._script(keys=[key], args=[round(interval * 1e6), round(tolerance * 1e6)])
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return self._fallback.take(key, interval, tolerance)
        return max(int(wait) / 1e6, 0.001) if int(wait) > 0 else None

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.logger is not None and now >= self._warned:
            self._warned = now + 60.0  # once a minute, not per call
            self.logger.warning("rate limits counted in this process: Redis is unreachable", error=str(exc))


RateStore = MemoryRates | RedisRates


class RateLimiter:
    """One `RateLimit` over a store: `await limiter.take(subject)` counts a call of `subject`
    (None: allowed, else the seconds to wait). For route handlers, which answer 429 with a
    `Retry-After` header (`kaiju.ratelimit.rate.retry_after`), and for the RPC middleware.

        limiter = RateLimiter(RateLimit(methods="upload", rate="10/minute"), "upload", MemoryRates(), app.namespace)
        wait = await limiter.take(request.remote)
    """

    __slots__ = ("rule", "name", "store", "namespace", "interval", "tolerance", "per", "_keys", "_by_client")

    def __init__(self, rule: RateLimit, name: str, store: RateStore, namespace: Namespace):
        self.rule = rule
        self.name = name
        self.store = store
        self.namespace = namespace
        self.interval = rule.interval
        self.tolerance = rule.tolerance
        self.per = rule.per
        self._keys: dict[str, str] = {}  # subject -> key, the latest few (a key is built once)
        self._by_client: dict[str | None, str] = {}  # the same by bare address, for the common case

    def key(self, subject: str) -> str:
        """The store key of `subject` under this limiter."""
        found = self._keys.get(subject)
        if found is None:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            found = self._keys[subject] = rate_key(self.namespace, self.name, subject)
        return found

    def key_of(self, ctx: RequestContext) -> str:
        """The store key of the caller of `ctx` under this limiter (`per`): its user, its
        session, its address (a caller without a session counts by it), or everyone."""
        per = self.per
        session = ctx.session
        if per == "ip" or (session is None and per != "global"):
            found = self._by_client.get(ctx.client)
            if found is None:
                if len(self._by_client) >= _KEYS_KEPT:
                    self._by_client.clear()
                found = self._by_client[ctx.client] = self.key(f"ip:{ctx.client or '-'}")
            return found
        if per == "user" and getattr(session, "user_id", None) is not None:
            return self.key(f"u:{session.user_id}")
        if per == "session":
            return self.key(f"s:{session.id}")
        return self.key("*" if per == "global" else f"ip:{ctx.client or '-'}")

    async def take(self, subject: str) -> float | None:
        """Count one call of `subject`: None when allowed, else the seconds to wait."""
        return await self.store_take(self.key(subject))

    async def store_take(self, key: str) -> float | None:
        """Count one call on the store key `key` (see `key`)."""
        taken = self.store.take(key, self.interval, self.tolerance)
        return await taken if isinstance(taken, Awaitable) else taken
