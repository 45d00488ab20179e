"""Every key prefix kaiju writes into a shared store (Redis, or the memory backends).

A key is `<namespace>.<prefix>.<rest>`, the namespace being `<env>.<app>` or the env's
shared one, `<env>._shared` (see `kaiju.runtime.service.Namespace`). The prefixes start
with an underscore so they never clash with an app's own top-level keys.
"""

CACHE = "_cache"  # a cached value: <ns>._cache.<key>
CACHE_FILL = "_cache_fill"  # the short lock of one get_or_set() loader: <ns>._cache_fill.<key>
LOCK = "_lock"  # a named lock: <ns>._lock.<key>
LOCK_FENCE = "_lock_fence"  # the namespace's fencing-token counter: <ns>._lock_fence
STREAM = "_stream"  # a topic's stream: <ns>._stream.<topic>
DEAD_LETTER_SUFFIX = ".dead"  # a stream's dead letters: <stream>.dead
TOPIC_LOCK = "stream"  # a paused topic, a lock in the shared namespace: <env>._shared._lock.stream.<stream>
EVENTS = "_events"  # the pub/sub channel of RedisEvents (a channel, no key): <ns>._events
SESSION = "_session"  # a session, a cache entry (CacheSessions' default key_prefix): <ns>._cache._session.<id>
