"""Password hashes: argon2id through argon2-cffi, verified in a thread of a bounded pool.

    hasher = Passwords()
    stored = hasher.hash("correct horse")             # "$argon2id$v=19$m=65536,t=3,p=4$..."
    ok, new_hash = await hasher.verify(stored, "correct horse")

Verifying costs tens of milliseconds of CPU and 64 MiB of memory by design (argon2-cffi's
RFC 9106 low-memory profile), so it runs in threads, never on the event loop itself:
`verify` takes an executor (`AuthService` gives it a pool of `hash_workers` threads, so at
most that many checks run at once, each with its 64 MiB). `verify` also says when a stored
hash was made with other parameters than the current ones (the caller saves the new hash
it returns).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import argon2

__all__ = ["HashPool", "Passwords", "hash_password", "is_password_hash"]

# what argon2-cffi writes: "$argon2id$v=19$m=...,t=...,p=...$salt$hash"
_HASH = re.compile(r"\$argon2(id|i|d)\$(v=\d+\$)?m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")

# Verified against when the user is unknown, so that case costs what a wrong password costs.
# The hash of a random password nobody kept, made with argon2-cffi's default parameters: a
# hasher with those parameters needs no hashing of its own to have a dummy (a process that
# never serves a login never spends an argon2 run, nor its 64 MiB, on one).
_DUMMY = "$argon2id$v=19$m=65536,t=3,p=4$egKIYC3r8Wd3zEFPY1Wmww$lNE8gRFaWD4reKJWFdbNloBMctdOhejnjatexDPn+1M"


def is_password_hash(value: object) -> bool:
    """True when `value` is an argon2 hash string (not, say, a plain password)."""
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


def hash_password(password: str) -> str:
    """A new salted argon2id hash of `password`, with argon2-cffi's recommended parameters."""
    import argon2  # imported on first use: checking a config needs no hashing

    return argon2.PasswordHasher().hash(password)


class Passwords:
    """Hashing and verifying with argon2id (argon2-cffi's recommended parameters by default).

    Cheap to make: with the default parameters the dummy hash for unknown users is a
    constant; with others it is made by the first check that needs it, in that check's
    thread (never as work shared between requests on the loop).
    """

    def __init__(self, hasher: argon2.PasswordHasher | None = None):
        import argon2  # imported on first use: checking a config needs no hashing
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        self._mismatch = (VerifyMismatchError, VerificationError, InvalidHashError)
        self.hasher = hasher or argon2.PasswordHasher()
        self._dummy: str | None = None if self.hasher.check_needs_rehash(_DUMMY) else _DUMMY
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        """A new salted argon2id hash of `password` (blocking: call it off the loop in a server)."""
        return self.hasher.hash(password)

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
            return self._dummy

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        try:
            self.hasher.verify(stored or self._dummy or self._dummy_hash(), password)
        except self._mismatch:
            return False, None
        if stored is None:
            return False, None
        return True, (self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None)

    async def verify(
        self, stored: str | None, password: str, pool: HashPool | Executor | None = None
    ) -> tuple[bool, str | None]:
        """Whether `password` matches the hash `stored`, in a thread of `pool` (a `HashPool`, an
        executor, or the loop's default executor when None); (ok, new hash or None).

        `stored=None` (an unknown user) verifies against a dummy hash and answers False, so
        it takes the time a wrong password takes. The new hash is given when `stored` was
        made with parameters other than the current ones; the caller should store it. A
        caller cancelled while its check waits for a thread takes it out of the line.
        """
        if isinstance(pool, HashPool):
            return await pool.run(self._verify, stored, password)
        return await asyncio.get_running_loop().run_in_executor(pool, self._verify, stored, password)


class HashPool:
    """The threads password checks run in: `workers` at once, and at most `queue` more
    waiting for one (`full` says a new check would exceed that: refuse it rather than let a
    line of checks grow). Each running check holds argon2's memory (64 MiB by default), so
    `workers` bounds the memory that hashing can take.

    A check whose caller is cancelled while it waits leaves the line; one already running
    finishes in its thread and still counts until it has.
    """

    def __init__(self, workers: int, queue: int):
        self.limit = workers + queue
        self.busy = 0  # checks submitted and not finished (running or waiting)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kaiju-argon2")
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """Whether every thread is busy and the line is at its limit."""
        return self.busy >= self.limit

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a thread of the pool; cancelling the caller takes it out of the line."""
        with self._lock:
            self.busy += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._finished)
        return await asyncio.wrap_future(future)

    def _finished(self, future: Future) -> None:
        with self._lock:
            self.busy -= 1

    def close(self) -> None:
        """Drop the checks still waiting; those running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
