"""Password hashes: argon2id through argon2-cffi, verified in a thread.

    hasher = Passwords()
    stored = hasher.hash("correct horse")             # "$argon2id$v=19$m=65536,t=3,p=4$..."
    ok, new_hash = await hasher.verify(stored, "correct horse")

Verifying costs tens of milliseconds of CPU by design, so it runs in the loop's default
executor, never on the event loop itself. `verify` also says when a stored hash was made
with other parameters than the current ones (the caller saves the new hash it returns).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import argon2

__all__ = ["Passwords", "hash_password", "is_password_hash"]

# what argon2-cffi writes: "$argon2id$v=19$m=...,t=...,p=...$salt$hash"
_HASH = re.compile(r"\$argon2(id|i|d)\$(v=\d+\$)?m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def is_password_hash(value: object) -> bool:
    """True when `value` is an argon2 hash string (not, say, a plain password)."""
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


def hash_password(password: str) -> str:
    """A new salted argon2id hash of `password`, with argon2-cffi's recommended parameters."""
    import argon2  # imported on first use: checking a config needs no hashing

    return argon2.PasswordHasher().hash(password)


class Passwords:
    """Hashing and verifying with argon2id (argon2-cffi's recommended parameters by default)."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None):
        import argon2  # imported on first use: checking a config needs no hashing
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        self._mismatch = (VerifyMismatchError, VerificationError, InvalidHashError)
        self.hasher = hasher or argon2.PasswordHasher()
        # verified against when the user is unknown, so that case costs what a wrong password costs
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """A new salted argon2id hash of `password` (blocking: call it off the loop in a server)."""
        return self.hasher.hash(password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        try:
            self.hasher.verify(stored or self._dummy, password)
        except self._mismatch:
            return False, None
        if stored is None:
            return False, None
        return True, (self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """Whether `password` matches the hash `stored`, in a thread; (ok, new hash or None).

        `stored=None` (an unknown user) verifies against a dummy hash and answers False, so
        it takes the time a wrong password takes. The new hash is given when `stored` was
        made with parameters other than the current ones; the caller should store it.
        """
        return await asyncio.get_running_loop().run_in_executor(None, self._verify, stored, password)
