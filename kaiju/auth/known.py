"""`Known`: callers an auth service has verified, remembered for a while so the next request
of the same caller costs a dictionary look-up instead of a trip to the cache and the user store.

`AuthService` remembers access tokens, `CacheSessions` sessions, each only when an `Events`
service announces what ends them (`Events.revoke`: a logout, a revoked token family, a
disabled user, a session written by another request), in this process and in every other
sharing the backend. An entry is forgotten

- at once when a notice names it (the notices of this process are heard before its own
  revocation returns; those of others when the events channel brings them);
- entirely when notices may have been missed (`resync`: the channel broke);
- `recheck` seconds after it was verified, for what no notice announces (a user changed
  directly in a database, a session that expired), and never later than the token or the
  session itself expires.

A verification that was under way when a notice arrived is not remembered (it may have read
what the notice revoked): `generation` tells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from kaiju.events.base import EventListener

__all__ = ["Known"]

Tag = tuple[str, str]  # a notice that ends an entry: (kind, value), as `Events.revoke` sends it


class Known(EventListener):
    """Up to `limit` entries `key -> value`, each until a loop-independent monotonic time and
    each ended by the notices named by its tags; the oldest entry goes first when full."""

    def __init__(self, limit: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self.generation = 0  # counts notices and resyncs: a verification started before one is not kept
        self._items: dict[Hashable, tuple[Any, float, tuple[Tag, ...]]] = {}
        self._tagged: dict[Tag, set[Hashable]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any:
        """The value kept under `key`, or None (never kept, forgotten, or past its time)."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self.clock():
            self.forget(key)
            return None
        return item[0]

    def keep(self, key: Hashable, value: Any, seconds: float, tags: Iterable[Tag], since: int) -> None:
        """Remember `value` under `key` for `seconds`, to be forgotten by a notice named in
        `tags`; nothing happens when a notice came since `since` (the `generation` read before
        the verification began) or when `seconds` is not positive."""
        if since != self.generation or seconds <= 0:
            return
        self.forget(key)
        if len(self._items) >= self.limit:
            self.forget(next(iter(self._items)))
        tags = tuple(tags)
        self._items[key] = (value, self.clock() + seconds, tags)
        for tag in tags:
            self._tagged.setdefault(tag, set()).add(key)

    def forget(self, key: Hashable) -> None:
        """Drop the entry under `key` (nothing happens when there is none)."""
        item = self._items.pop(key, None)
        if item is None:
            return
        for tag in item[2]:
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]

    # -- EventListener: the notices --------------------------------------------------

    def revoked(self, kind: str, value: str) -> None:
        self.generation += 1
        for key in list(self._tagged.get((kind, value), ())):
            self.forget(key)

    def resync(self) -> None:
        self.generation += 1
        self._items.clear()
        self._tagged.clear()
