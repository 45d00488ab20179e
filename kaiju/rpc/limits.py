"""Rate limits on RPC calls: the middleware `RPCServer.rate_limits` compiles to.

    rate_limits:
      - {methods: "shop.*", per: user, rate: "100/minute", burst: 20}
      - {methods: auth.login, per: ip, rate: "10/minute"}

Each rule is a `RateLimiter` (GCRA, `kaiju.ratelimit`) with a key per subject: the
session's user, the session, the caller's address (`ctx.client`) or everyone (`global`);
a caller without a session counts by its address for `user` and `session` too. The store
is the server's `rate_limit_store` (Redis: shared by every process of the app) or this
process's memory.

A call over a limit is refused before it runs (no slot taken) with `TooManyRequests` and
`data.retry_after` (seconds). A stream message's call is not refused: the listener is slowed
down, waiting its turn (within the call's deadline). Calls from inside the app (tasks,
in-process and nested calls) are not limited.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from kaiju.ratelimit.rate import Rate, RateLimit
from kaiju.ratelimit.store import MemoryRates, RateLimiter, RateStore, RedisRates
from kaiju.rpc import errors as E
from kaiju.rpc.context import RequestContext
from kaiju.rpc.middleware import Call, CallNext
from kaiju.runtime.service import Namespace

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.redis import RedisConnection

__all__ = ["DEFAULT_LOGIN_LIMIT", "RateLimits", "rate_limits"]

# The per-address limit of `auth.login` an app serving it gets unless a rule of its own covers it.
DEFAULT_LOGIN_LIMIT = RateLimit(methods="auth.login", per="ip", rate=Rate("30/minute"), burst=10)

_NOT_LIMITED = frozenset({"internal", "task"})  # callers inside the app
_SLOWED = "stream"  # a listener waits its turn instead of being refused


class RateLimits:
    """The middleware: the limiters of the rules matching each method, looked up once per name.

    It runs on every call of the app (a middleware wraps them all), so a call of a method
    no rule names costs one dict lookup, and one that is counted in memory awaits nothing
    more than the rest of the chain."""

    def __init__(self, rules: Sequence[RateLimit], store: RateStore, namespace: Namespace):
        self.limiters = [
            RateLimiter(rule, f"{rule.methods}.{rule.per}.{n}", store, namespace) for n, rule in enumerate(rules)
        ]
        self.store = store
        # a memory store answers at once: no coroutine per call
        self._take_now = store.take if isinstance(store, MemoryRates) else None
        self._take_later = store.take if isinstance(store, RedisRates) else None
        self._by_method: dict[str, tuple[RateLimiter, ...]] = {}

    def limiters_of(self, method: str) -> tuple[RateLimiter, ...]:
        """The limiters whose rule matches `method` (cached per name: a method name is one
        the table knows, or a refusal's constant)."""
        found = self._by_method.get(method)
        if found is None:
            found = tuple(lim for lim in self.limiters if fnmatch.fnmatchcase(method, lim.rule.methods))
            self._by_method[method] = found
        return found

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        limiters = self._by_method.get(call.target.name)
        if limiters is None:
            limiters = self.limiters_of(call.target.name)
        ctx = call.context
        if limiters and ctx.transport not in _NOT_LIMITED:
            for limiter in limiters:
                key = limiter.key_of(ctx)
                wait = None
                if self._take_now is not None:
                    wait = self._take_now(key, limiter.interval, limiter.tolerance)
                elif self._take_later is not None:
                    wait = await self._take_later(key, limiter.interval, limiter.tolerance)
                if wait is not None:
                    await self._over(ctx, limiter, key, wait)
        return await call_next(call)

    async def _over(self, ctx: RequestContext, limiter: RateLimiter, key: str, wait: float | None) -> None:
        """A call over `limiter`: TooManyRequests, unless it is a stream message's, which waits
        its turn (within its deadline) and returns once counted."""
        while wait is not None:
            if ctx.transport != _SLOWED or wait >= ctx.time_left():
                rule = limiter.rule
                raise E.TooManyRequests(
                    f"Too many requests: {rule.rate} per {rule.per} for {rule.methods}",
                    data={"retry_after": round(wait, 3)},
                )
            await asyncio.sleep(wait)
            wait = await limiter.store_take(key)


def rate_limits(
    rules: Sequence[RateLimit], methods: Collection[str], store: RedisConnection | None, server: Any
) -> RateLimits | None:
    """The `RateLimits` middleware for the `rules`, with `DEFAULT_LOGIN_LIMIT` added when
    `methods` has `auth.login` and no rule covers it; None when there is nothing to limit (no
    cost). A server whose only middleware it is sends the calls of the methods no rule names
    straight to the executor (`RPCServer`'s plain path)."""
    rules = list(rules)
    if "auth.login" in methods and not any(fnmatch.fnmatchcase("auth.login", r.methods) for r in rules):
        rules.append(DEFAULT_LOGIN_LIMIT)
    if not rules:
        return None
    counts: RateStore = RedisRates(store, server.logger) if store is not None else MemoryRates()
    return RateLimits(rules, counts, server.app.namespace)
