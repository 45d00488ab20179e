"""Key-value caches: `MemoryCache` (one process) and `RedisCache` (many hosts).

The interface lives in `kaiju.cache.base`; backends are imported only when named.
"""

from kaiju.cache.base import Cache

__all__ = ["Cache"]
