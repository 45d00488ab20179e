"""Rate limits by GCRA (the generic cell rate algorithm): one number per limiter and subject.

    from kaiju.ratelimit import MemoryRates, RateLimit, RateLimiter, RedisRates

- `RateLimit` (`kaiju.ratelimit.rate`): one rule as the config gives it (`methods`, `per`,
  `rate`, `burst`), and the GCRA arithmetic, pure;
- `MemoryRates` / `RedisRates` (`kaiju.ratelimit.store`): where the theoretical arrival
  times are kept: in this process, or in Redis for every process of the app (one key per
  limiter and subject, a Lua script on it: one slot on a Cluster);
- `RateLimiter`: a rule over a store, for route handlers and the RPC middleware
  (`kaiju.rpc.limits`).

Names are imported lazily: importing this package loads no Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.ratelimit.rate import Rate, RateLimit
    from kaiju.ratelimit.store import MemoryRates, RateLimiter, RateStore, RedisRates

__getattr__ = _front_door(__name__, __file__, globals())
