"""Key-value caches: `MemoryCache` (one process) and `RedisCache` (many hosts).

    from kaiju.cache import Cache, MemoryCache, RedisCache

The interface is `Cache` (`kaiju.cache.base`). Names are imported lazily: importing this
package (or naming `RedisCache`) loads no Redis client; one is imported when a
`RedisConnection` starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "Cache": "kaiju.cache.base",
    "MemoryCache": "kaiju.cache.memory",
    "RedisCache": "kaiju.cache.redis",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.cache.base import Cache
    from kaiju.cache.memory import MemoryCache
    from kaiju.cache.redis import RedisCache


__getattr__ = _lazy_getattr("kaiju.cache", _EXPORTS, globals())
