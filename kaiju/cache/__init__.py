"""Key-value caches: `MemoryCache` (one process) and `RedisCache` (many hosts).

    from kaiju.cache import Cache, MemoryCache, RedisCache

The interface is `Cache` (`kaiju.cache.base`). Names are imported lazily: importing this
package (or naming `RedisCache`) loads no Redis client; one is imported when a
`RedisConnection` starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.cache.base import Cache
    from kaiju.cache.memory import MemoryCache
    from kaiju.cache.redis import RedisCache

__getattr__ = _front_door(__name__, __file__, globals())
