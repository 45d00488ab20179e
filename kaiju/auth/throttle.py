"""Counting failed logins per username in the cache, to lock out password guessing.

A login attempt claims the first free one of `max_failures` slots, each a cache key that lives
`lockout` seconds and holds the time it was claimed. Claiming goes through
`Cache.get_or_set`, which writes a missing key once however many callers race for it
(across processes too with Redis), so parallel guesses cannot share a slot. The number
of live slots is the number of failed (or running) attempts within the last `lockout`
seconds, since a successful login frees them all; once all are taken, logins for that
username wait until the oldest slot expires.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from kaiju.cache.base import Cache

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Failed-login slots for each username, kept in `cache` under `<prefix>.<hash>.<n>`."""

    def __init__(self, cache: Cache, max_failures: int = 5, lockout: float = 300.0, prefix: str = "_auth.fail"):
        self.cache = cache
        self.max_failures = max_failures
        self.lockout = lockout
        self.prefix = prefix

    def _keys(self, username: str) -> list[str]:
        # hashed: a username is any text, a cache key should not be
        digest = hashlib.sha256(username.encode()).hexdigest()[:32]
        return [f"{self.prefix}.{digest}.{n}" for n in range(self.max_failures)]

    async def attempt(self, username: str) -> float | None:
        """Take a slot for one login attempt of `username`: None when one was free (the attempt
        may go on; `reset` gives the slots back when it succeeds), else the seconds until
        the oldest slot frees up. Taking the slot before checking the password bounds
        parallel guesses too."""
        keys = self._keys(username)
        taken = await self.cache.m_get(keys)
        mine = [secrets.token_hex(8), time.time()]
        for key in keys:
            if key not in taken and await self.cache.get_or_set(key, lambda: mine, ttl=self.lockout) == mine:
                return None
        taken = await self.cache.m_get(keys)
        oldest = min((float(value[1]) for value in taken.values()), default=time.time())
        return max(0.001, round(oldest + self.lockout - time.time(), 3))

    async def reset(self, username: str) -> None:
        """Forget the attempts of `username` (after a successful login)."""
        await self.cache.m_delete(self._keys(username))
