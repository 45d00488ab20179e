"""Every key prefix kaiju writes into a shared store (Redis, or the memory backends), and the
hash tags that keep related keys on one Redis Cluster slot.

A key is `<namespace>.<prefix>.<rest>`, the namespace being `<env>.<app>` or the env's
shared one, `<env>._shared` (see `kaiju.runtime.service.Namespace`). The prefixes start
with an underscore so they never clash with an app's own top-level keys.

Redis Cluster hashes a key by its hash tag, the text between the first `{` and the next
`}` (when not empty), else by the whole key. Every Lua script and multi-key command kaiju
runs touches keys of one tag, so it works on a Cluster (no CROSSSLOT error):

====================  ==========================================  =======================
what                  key                                         tag (one slot)
====================  ==========================================  =======================
cache value           `<ns>._cache.{<key>}`                       the key
its fill lock         `<ns>._cache_fill.{<key>}`                  the key
lock                  `{<ns>._lock}.<key>`                        the namespace's locks
fencing counter       `{<ns>._lock}_fence`                        the namespace's locks
stream                `{<ns>._stream.<topic>}`                    the stream
its dead letters      `{<ns>._stream.<topic>}.dead`               the stream
session               `<ns>._cache.{_session.<id>}`               the session
token family          `<ns>._cache._auth.family.{<family>}`       the family
its spent markers     `<ns>._cache._auth.spent.{<family>}.<jti>`  the family
and pairs in grace    `<ns>._cache._auth.pair.{<family>}.<jti>`   the family
login throttle slots  `<ns>._cache._auth.fail.{<user hash>}.<n>`  the username
rate limit            `{<ns>._rate.<limiter>.<subject>}`          the limiter and subject
task's last run       `{<ns>._tasks}.last.<task>`                 the app's tasks
task's recent runs    `{<ns>._tasks}.runs.<task>`                 the app's tasks
paused tasks          `{<ns>._tasks}.paused`                      the app's tasks
runs asked for        `{<ns>._tasks}.run_now`                     the app's tasks
====================  ==========================================  =======================

A cache key that carries its own tag (`orders.{42}.lines`) keeps it, so an app can put
keys it reads together (`m_get`) on one slot; any other key is tagged whole. All locks of
a namespace share one slot, as the fencing counter they draw from must be in the same
slot as each lock for the acquire script to run on a Cluster. The task records of an app
share one slot too, so that one script reads the control of every task at once.
"""

CACHE = "_cache"  # a cached value: <ns>._cache.<key>
CACHE_FILL = "_cache_fill"  # the short lock of one get_or_set() loader: <ns>._cache_fill.<key>
LOCK = "_lock"  # a named lock: {<ns>._lock}.<key>
LOCK_FENCE = "_fence"  # the namespace's fencing-token counter: {<ns>._lock}_fence
STREAM = "_stream"  # a topic's stream: {<ns>._stream.<topic>}
DEAD_LETTER_SUFFIX = ".dead"  # a stream's dead letters: <stream>.dead
TOPIC_LOCK = "stream"  # a paused topic, a lock in the shared namespace: {<env>._shared._lock}.stream.<stream>
# the pub/sub channel of RedisEvents (a channel, no key: a Cluster sends it to every node): <ns>._events
EVENTS = "_events"
SESSION = "_session"  # a session, a cache entry (CacheSessions' default key_prefix): <ns>._cache.{_session.<id>}
AUTH_FAMILY = "family"  # a login's token family, under AuthService's key_prefix: _auth.family.{<family>}
AUTH_SPENT = "spent"  # a spent refresh token: _auth.spent.{<family>}.<jti>
AUTH_PAIR = "pair"  # the pair a spent refresh token got, kept for refresh_grace: _auth.pair.{<family>}.<jti>
AUTH_FAIL = "fail"  # a failed-login slot: _auth.fail.{<user hash>}.<n>
RATE = "_rate"  # one limiter's count for one subject (a GCRA time): {<ns>._rate.<limiter>.<subject>}
TASKS = "_tasks"  # the tasks' shared records: {<ns>._tasks}.<what>[.<task>]


def hash_tag(key: str) -> str | None:
    """The text Redis Cluster hashes `key` by, when `key` has a (non-empty) hash tag.

    >>> hash_tag("a.{b}.c"), hash_tag("a.{}.c"), hash_tag("plain")
    ('b', None, None)
    """
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def tagged(prefix: str, key: str) -> str:
    """`prefix + key`, hashed by `key`'s own tag when it has one, else with `key` as the tag.

    `prefix` must hold no `{`. Two keys made with the same `key` and any prefixes land on
    one slot.

    >>> tagged("dev.shop._cache.", "user.1"), tagged("dev.shop._cache.", "order.{7}.lines")
    ('dev.shop._cache.{user.1}', 'dev.shop._cache.order.{7}.lines')
    """
    if "{" in key and hash_tag(key) is not None:
        return prefix + key
    return f"{prefix}{{{key}}}"


def tag(text: str) -> str:
    """`text` as a whole hash tag: `{text}`; keys that start with it share a slot."""
    return f"{{{text}}}"
