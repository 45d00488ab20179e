"""Counting failed logins per username in the cache, to lock out password guessing.

Every login attempt first claims one of `max_failures` slots of its username: a cache key
that lives `lockout` seconds. Claiming goes through `Cache.get_or_set`, which writes a
missing key once however many callers race for it (across processes too with Redis), so
parallel guesses cannot share a slot. An attempt that fails marks its slot failed (with
the time); one that succeeds frees its slot. Once every slot holds a failure, the
username is locked out until the oldest one expires. An attempt that finds every slot
taken while some are still being checked waits (up to `wait` seconds) for them to be
decided, so parallel logins with the right password are not mistaken for guessing.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import NamedTuple

from kaiju.cache.base import Cache

__all__ = ["LoginThrottle", "Slot"]

_PENDING, _FAILED = "pending", "failed"


class Slot(NamedTuple):
    """One claimed attempt: its cache key and the value that marks it as ours."""

    key: str
    token: str


class LoginThrottle:
    """Failed-login slots for each username, kept in `cache` under `<prefix>.{<hash>}.<n>`."""

    def __init__(
        self, cache: Cache, max_failures: int = 5, lockout: float = 300.0, prefix: str = "_auth.fail", wait: float = 10.0
    ):
        self.cache = cache
        self.max_failures = max_failures
        self.lockout = lockout
        self.prefix = prefix
        self.wait = wait

    def _keys(self, username: str) -> list[str]:
        # hashed: a username is any text, a cache key should not be
        digest = hashlib.sha256(username.encode()).hexdigest()[:32]
        # hash-tagged: one user's slots share a Cluster slot, so m_get reads them in one MGET
        return [f"{self.prefix}.{{{digest}}}.{n}" for n in range(self.max_failures)]

    async def claim(self, username: str) -> Slot | float:
        """A slot for one attempt of `username`, or the seconds until it may try again."""
        keys = self._keys(username)
        token = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.wait
        while True:
            taken = await self.cache.m_get(keys)
            mine = [token, time.time(), _PENDING]
            for key in keys:
                if key not in taken and await self.cache.get_or_set(key, lambda: mine, ttl=self.lockout) == mine:
                    return Slot(key, token)
            taken = await self.cache.m_get(keys)
            failures = [float(value[1]) for value in taken.values() if value[2] == _FAILED]
            if len(failures) >= self.max_failures or loop.time() >= give_up:
                oldest = min(failures, default=time.time())
                return max(0.001, round(oldest + self.lockout - time.time(), 3))
            await asyncio.sleep(0.02)  # some attempts are still being checked: wait for their outcome

    async def failed(self, slot: Slot) -> None:
        """The attempt failed: its slot counts as a failure for `lockout` seconds."""
        await self.cache.set(slot.key, [slot.token, time.time(), _FAILED], ttl=self.lockout)

    async def succeeded(self, slot: Slot) -> None:
        """The attempt succeeded: free its slot (earlier failures still count)."""
        await self.cache.delete(slot.key)
