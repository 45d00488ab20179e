"""Counting failed logins per account in the cache, to lock out password guessing; and a
per-client limit on login attempts, checked before anything is written.

Every login attempt first claims one of `max_failures` slots of its account: a cache key
written only when missing (`Cache.add`: one caller wins however many race for it, across
processes too with Redis), so parallel guesses cannot share a slot.
An account is named twice: by its normalised username (NFKC, case-folded: "ALICE",
"alice" and its full-width form are one name to the throttle, whatever the user store makes of
them) and, once the store has found the user, by the user's id, so that a store matching
names more loosely still counts every guess against the one account.

An attempt settles its slot when it ends, whatever ends it (`Attempt`, in `finally`): a
wrong password marks the slot failed for `lockout` seconds; a right one, or an attempt
that ended without a verdict (cancelled by its deadline, a dropped connection, an error of
the store), frees it. Only completed failures count. A slot still being checked lives
`pending_ttl` seconds at most, so a process that dies mid-check frees it soon.

Nothing waits: an attempt that finds no free slot is refused at once with the seconds
until it may try again (`retry_after`): the time until the oldest failure expires when
every slot holds a failure, else a short pause while the other attempts are checked.

`ClientLimit` bounds the attempts of one client address per process (GCRA): a guest
cannot make the throttle write keys for thousands of invented usernames, nor buy many
password checks with one batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import unicodedata
from collections.abc import Coroutine, Hashable
from typing import Any, NamedTuple

from kaiju.cache.base import Cache

__all__ = ["Attempt", "ClientLimit", "LoginThrottle", "Refused", "Slot", "normalise_username"]

_PENDING, _FAILED = "pending", "failed"
BUSY_RETRY = 1.0  # seconds to wait when other attempts of the account are being checked


def normalise_username(username: str) -> str:
    """The form of a username the throttle counts under: NFKC-normalised and case-folded."""
    return unicodedata.normalize("NFKC", username).casefold()


class Slot(NamedTuple):
    """One claimed attempt: its cache key and the value that marks it as ours."""

    key: str
    token: str


class Refused(NamedTuple):
    """An attempt refused: the seconds until the account may try again, and whether it is
    locked out (every slot holds a failure) rather than busy (other attempts being checked)."""

    retry_after: float
    locked: bool


class LoginThrottle:
    """Failed-login slots for each account, kept in `cache` under `<prefix>.{<hash>}.<n>`
    (written with `keep=True`: never evicted to make room, so a guest cannot erase a
    lockout by filling the cache)."""

    def __init__(
        self,
        cache: Cache,
        max_failures: int = 5,
        lockout: float = 300.0,
        prefix: str = "_auth.fail",
        pending_ttl: float = 30.0,
    ):
        self.cache = cache
        self.max_failures = max_failures
        self.lockout = lockout
        self.prefix = prefix
        self.pending_ttl = min(pending_ttl, lockout)
        self._background: set[asyncio.Task] = set()

    def _keys(self, account: str) -> list[str]:
        # hashed: a username is any text, a cache key should not be
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        # hash-tagged: one account's slots share a Cluster slot, so m_get reads them in one MGET
        return [f"{self.prefix}.{{{digest}}}.{n}" for n in range(self.max_failures)]

    async def claim(self, account: str) -> Slot | Refused:
        """A slot for one attempt on `account` (a normalised name, or `id:<user id>`), or the
        refusal saying when it may try again; never waits for other attempts."""
        keys = self._keys(account)
        token = secrets.token_hex(8)
        taken = await self.cache.m_get(keys)
        for key in keys:
            if key not in taken and await self.cache.add(
                key, [token, time.time(), _PENDING], ttl=self.pending_ttl, keep=True
            ):
                return Slot(key, token)
        taken = await self.cache.m_get(keys)  # those others won meanwhile too
        failures = [float(value[1]) for value in taken.values() if value[2] == _FAILED]
        if len(failures) >= self.max_failures:
            return Refused(max(0.001, round(min(failures) + self.lockout - time.time(), 3)), True)
        return Refused(BUSY_RETRY, False)

    def later(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` (a release) in the background, kept until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def failed(self, slot: Slot) -> None:
        """The attempt failed: its slot counts as a failure for `lockout` seconds."""
        await self.cache.set(slot.key, [slot.token, time.time(), _FAILED], ttl=self.lockout, keep=True)

    async def release(self, slot: Slot) -> None:
        """The attempt succeeded, or ended without a verdict: free its slot (earlier failures
        still count)."""
        await self.cache.delete(slot.key)


class Attempt:
    """The slots one login attempt holds (by name, then by user id), settled once at the end:
    `await attempt.settle(failed)` in a `finally`. Settling survives the caller's
    cancellation: the slots are freed or marked failed in any case, and a slot whose claim
    was under way when the caller was cancelled is freed once the claim lands."""

    __slots__ = ("throttle", "slots")

    def __init__(self, throttle: LoginThrottle):
        self.throttle = throttle
        self.slots: list[Slot] = []

    async def claim(self, account: str) -> Refused | None:
        """Claim a slot on `account`; None when claimed, else the refusal."""
        claiming = asyncio.ensure_future(self.throttle.claim(account))
        try:
            got = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claiming.add_done_callback(self._free_late)
            raise
        if isinstance(got, Slot):
            self.slots.append(got)
            return None
        return got

    def _free_late(self, claiming: asyncio.Future) -> None:
        """Free a slot claimed for a caller that has gone (its claim landed after it left)."""
        if claiming.cancelled() or claiming.exception() is not None:
            return
        slot = claiming.result()
        if isinstance(slot, Slot):
            self.throttle.later(self.throttle.release(slot))

    async def settle(self, failed: bool) -> None:
        """Mark every slot failed (a wrong password) or free it (anything else)."""
        slots, self.slots = self.slots, []
        for slot in slots:
            if failed:
                await self.throttle.failed(slot)
            else:
                await self.throttle.release(slot)


class ClientLimit:
    """At most `attempts` logins per `window` seconds from one client (a burst of `attempts`,
    then one every `window / attempts` s), counted in this process by GCRA: one float per
    client, forgotten once the client is idle again. Unbounded but expiring: a client is
    kept at most `window` seconds after its last attempt.

    An attempt is counted when it starts (`take`), so parallel attempts cannot all slip
    past the limit, and given back when it succeeds (`give_back`): only attempts pending
    or failed use up the limit."""

    def __init__(self, attempts: int, window: float):
        self.interval = window / attempts
        self.window = window
        self._tat: dict[Hashable, float] = {}  # client -> theoretical arrival time (monotonic)
        self._sweep_at = 0.0

    def take(self, client: Hashable) -> float | None:
        """Count one attempt of `client`: None when allowed, else the seconds to wait."""
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        tat = max(self._tat.get(client, now), now)
        if tat - now > self.window - self.interval + 1e-9:
            return max(0.001, round(tat - now - self.window + self.interval, 3))
        self._tat[client] = tat + self.interval
        return None

    def give_back(self, client: Hashable) -> None:
        """Return the attempt `take` counted for `client` (it succeeded)."""
        tat = self._tat.get(client)
        if tat is not None:
            self._tat[client] = max(tat - self.interval, time.monotonic())

    def _sweep(self, now: float) -> None:
        self._tat = {client: tat for client, tat in self._tat.items() if tat > now}
        self._sweep_at = now + min(self.window, 60.0)

    def __len__(self) -> int:
        return len(self._tat)
