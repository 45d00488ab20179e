"""Locks: the interface every backend implements, its errors, and what the backends share.

    async with locks.lock("report", ttl=10) as info:   # renewed every ttl/3 while held
        await build_report(fencing_token=info.token)

    info = await locks.acquire("nightly", ttl=60, wait=False, renew=False)   # LockExistsError if taken

A lock has an id (who holds it) and a fencing token (a number that grows with every
acquisition of that key). Times are seconds (float). Keys are namespaced by the service
(`{<env>.<app>._lock}.<key>`, or `{<env>._shared._lock}.<key>` with `shared: true`); a call
given `shared=True` uses the shared namespace for that one key, so that every app of the
env sees it (e.g. a lock pausing a topic that several apps consume).
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any, NamedTuple

from kaiju import keys
from kaiju.histogram import LATENCY_BUCKETS, Histogram, histogram_family
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive
from kaiju.telemetry.detail import trace_calls
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = [
    "LockError",
    "LockExistsError",
    "LockInfo",
    "LockLostError",
    "LockTimeout",
    "Locks",
    "NotLockOwnerError",
]


class LockError(Exception):
    """Base class of the lock errors."""


class LockExistsError(LockError):
    """The lock is held by someone else and the caller asked not to wait (`wait=False`)."""


class LockTimeout(LockError, TimeoutError):
    """The lock was not acquired within `timeout` seconds."""


class NotLockOwnerError(LockError):
    """The lock is not held under this id (it expired, was released, or belongs to another holder)."""


class LockLostError(LockError):
    """Raised out of `lock()` when the lock was lost while its body ran (a renewal failed)."""


class LockInfo(NamedTuple):
    """A held lock: `id` identifies the holder; `token` is the fencing token of this acquisition."""

    id: str
    token: int


class _Held:
    """A lock this service renews in the background until it is released."""

    __slots__ = ("key", "id", "ttl", "renewed_at", "timer", "body", "lost", "cancelled")

    def __init__(self, key: str, lock_id: str, ttl: float, now: float):
        self.key = key  # the full, namespaced key
        self.id = lock_id
        self.ttl = ttl
        self.renewed_at = now
        self.timer: asyncio.TimerHandle | None = None
        self.body: asyncio.Task | None = None
        self.lost = False
        self.cancelled = False  # we cancelled `body` because the lock was lost


# the calls to the store that `detail: full` traces (kaiju.telemetry.detail)
_STORE_CALLS = ("_acquire", "_release", "_renew", "_owners")


class Locks(Service, abc.ABC):
    """Named locks with a TTL, fencing tokens and background renewal.

    Renewal: a lock acquired with `renew=True` (the default) is renewed every `ttl/3` while
    it is held. When a renewal finds the lock gone (it expired or another holder has it), or
    renewals keep failing until `ttl` seconds have passed since the last good one, the lock is
    *lost*: renewing stops, a warning is logged, and the body of the `lock()` block holding it
    is cancelled and `LockLostError` is raised out of the block. When the service stops, it
    releases every lock it is renewing; a lock taken with `renew=False` lives out its TTL
    (a pause or a singleton claim must outlast a restart of the process that took it).
    """

    service_name = "locks"

    ttl: Positive = 10.0
    """Seconds a lock lives when `acquire()` is given no ttl."""
    shared: bool = False
    """Use the namespace shared by all apps of the env (`{<env>._shared._lock}`) instead of the app's."""
    telemetry: Telemetry | None = None
    """The `Telemetry` which, with `detail: full`, makes a span of each call to the store
    (an acquire's span lasts as long as its wait)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # acquisitions, refusals (taken / timeout), locks lost, time to acquire when waiting: the metrics'
        self.counts = {"acquired": 0, "taken": 0, "timeout": 0, "lost": 0}
        self.wait_time = Histogram(LATENCY_BUCKETS)

    # -- lifetime ---------------------------------------------------------

    async def start(self) -> None:
        namespace = self.app.shared_namespace if self.shared else self.app.namespace
        self._namespace = namespace
        # one hash tag per namespace: a lock and the fencing counter it draws from share a slot
        self._prefix = keys.tag(namespace.get_key(keys.LOCK)) + "."
        self._shared_prefix = keys.tag(self.app.shared_namespace.get_key(keys.LOCK)) + "."
        self._instance = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._held: dict[tuple[str, str], _Held] = {}
        self._renewals: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()
        # read by the metrics: acquisitions, refusals (taken / timeout), time to acquire when waiting
        self.counts = {"acquired": 0, "taken": 0, "timeout": 0, "lost": 0}
        self.wait_time = Histogram(LATENCY_BUCKETS)
        trace_calls(self, tracing_of(self.telemetry), "lock", _STORE_CALLS)
        try:
            await self._open()
        except BaseException:
            del self._loop
            raise
        self._running = True

    def metrics(self) -> Iterator[Any]:
        """Locks acquired, refused (taken / timeout), lost, and the time spent waiting for them."""
        from prometheus_client.core import CounterMetricFamily

        counts = self.counts
        acquired = CounterMetricFamily("kaiju_locks_acquired", "Locks acquired", labels=["locks"])
        refused = CounterMetricFamily("kaiju_locks_refused", "acquire() calls refused", labels=["locks", "reason"])
        lost = CounterMetricFamily("kaiju_locks_lost", "Locks lost while held (a renewal failed)", labels=["locks"])
        acquired.add_metric([self.name], counts["acquired"])
        refused.add_metric([self.name, "taken"], counts["taken"])
        refused.add_metric([self.name, "timeout"], counts["timeout"])
        lost.add_metric([self.name], counts["lost"])
        yield from (acquired, refused, lost)
        yield histogram_family(
            "kaiju_locks_wait_seconds",
            "Time acquire(wait=True) took to get the lock",
            ["locks"],
            [([self.name], self.wait_time)],
        )

    async def stop(self, exception: Exception | None = None) -> None:
        if "_loop" not in self.__dict__:
            return  # start() failed before anything was set up
        self._running = False  # waiters woken by _close() give up instead of taking the lock
        held, self._held = list(self._held.values()), {}
        for item in held:
            if item.timer is not None:
                item.timer.cancel()
            if item.body is not None and not item.body.done():
                self._lose(item, "the locks service is stopping")
            with suppress(Exception):
                await self._release(item.key, item.id)
        if self._renewals:
            await asyncio.wait(self._renewals, timeout=5)
        await self._close()
        del self._loop

    def _check_running(self) -> None:
        """Raise LockError unless the service is running (backends call it after every wait)."""
        if not self.__dict__.get("_running"):
            raise LockError(f"the locks service {self.name!r} is not running")

    async def _open(self) -> None:
        """Backend set-up at start."""

    async def _close(self) -> None:
        """Backend tear-down at stop."""

    # -- backend primitives (keys are full, namespaced keys) ----------------

    @abc.abstractmethod
    async def _acquire(self, key: str, lock_id: str, ttl: float, wait: bool, timeout: float | None) -> int:
        """Take `key` for `lock_id`; return the fencing token. Raise LockExistsError / LockTimeout."""

    @abc.abstractmethod
    async def _release(self, key: str, lock_id: str) -> bool:
        """Delete `key` if `lock_id` holds it; False when it does not."""

    @abc.abstractmethod
    async def _renew(self, key: str, lock_id: str, ttl: float) -> bool:
        """Reset the TTL of `key` if `lock_id` holds it; False when it does not."""

    @abc.abstractmethod
    async def _owners(self, keys: list[str]) -> list[str | None]:
        """The holder id of each key (None when free)."""

    # -- public API -------------------------------------------------------

    def full_key(self, key: str, shared: bool = False) -> str:
        """The namespaced key under which `key` is stored (in the env's shared namespace with `shared`)."""
        return (self._shared_prefix if shared else self._prefix) + key

    async def acquire(
        self,
        key: str,
        ttl: float | None = None,
        wait: bool = True,
        timeout: float | None = None,
        renew: bool = True,
        *,
        shared: bool = False,
    ) -> LockInfo:
        """Take the lock `key` for `ttl` seconds (default: the `ttl` setting).

        `wait=False` raises LockExistsError at once when the lock is taken; else wait for it,
        at most `timeout` seconds (None: no limit) before raising LockTimeout. With
        `renew=True` the lock is renewed every ttl/3 until `release()` or until the service
        stops; with `renew=False` it simply expires after `ttl`, whatever becomes of us.
        With `shared=True` the key lives in the env's shared namespace, seen by every app
        (pass `shared=True` to `release`, `owner` etc. of that key too).
        """
        ttl = self._check(key, ttl)
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        self._check_running()
        full = self.full_key(key, shared)
        lock_id = f"{self._instance}:{next(self._ids)}"
        began = time.perf_counter()  # the loop's clock has 1 ms steps on uvloop: too coarse for a wait
        try:
            token = await self._acquire(full, lock_id, ttl, wait, timeout)
        except (LockExistsError, LockTimeout) as exc:
            self.counts["timeout" if isinstance(exc, LockTimeout) else "taken"] += 1
            raise
        self.counts["acquired"] += 1
        if wait:
            self.wait_time.observe(time.perf_counter() - began)
        if not self._running:  # stopped while the backend took it: nobody would renew or release it
            with suppress(Exception):
                await self._release(full, lock_id)
            self._check_running()
        if renew:
            held = _Held(full, lock_id, ttl, self._loop.time())
            held.timer = self._loop.call_later(ttl / 3, self._renew_due, held)
            self._held[(full, lock_id)] = held
        return LockInfo(lock_id, token)

    async def release(self, key: str, lock_id: str, *, shared: bool = False) -> None:
        """Release the lock `key` held under `lock_id`.

        Raises NotLockOwnerError when `lock_id` does not hold it (anymore): a stale holder
        cannot release a lock someone else has taken since.
        """
        full = self.full_key(key, shared)
        held = self._held.pop((full, lock_id), None)
        if held is not None and held.timer is not None:
            held.timer.cancel()
        if not await self._release(full, lock_id):
            raise NotLockOwnerError(f"lock {key!r} is not held by {lock_id!r}")

    async def renew(self, key: str, lock_id: str, ttl: float | None = None, *, shared: bool = False) -> None:
        """Extend the lock `key` held under `lock_id` to `ttl` seconds from now.

        Raises NotLockOwnerError when `lock_id` does not hold it (anymore).
        """
        ttl = self._check(key, ttl)
        if not await self._renew(self.full_key(key, shared), lock_id, ttl):
            raise NotLockOwnerError(f"lock {key!r} is not held by {lock_id!r}")

    async def owner(self, key: str, *, shared: bool = False) -> str | None:
        """The id of the holder of `key`, or None when it is free."""
        self._check(key, self.ttl)
        return (await self._owners([self.full_key(key, shared)]))[0]

    async def exists(self, key: str, *, shared: bool = False) -> bool:
        """Whether `key` is held by anyone."""
        return await self.owner(key, shared=shared) is not None

    async def is_owner(self, key: str, lock_id: str | None = None, *, shared: bool = False) -> bool:
        """Whether `key` is held under `lock_id`, or (without one) by any lock this service took."""
        owner = await self.owner(key, shared=shared)
        if owner is None:
            return False
        if lock_id is not None:
            return owner == lock_id
        return owner.startswith(self._instance + ":")

    async def m_exists(self, keys: Collection[str], *, shared: bool = False) -> frozenset[str]:
        """The subset of `keys` that are held by anyone."""
        keys = list(keys)
        for key in keys:
            self._check(key, self.ttl)
        if not keys:
            return frozenset()
        owners = await self._owners([self.full_key(key, shared) for key in keys])
        return frozenset(key for key, owner in zip(keys, owners, strict=True) if owner is not None)

    @asynccontextmanager
    async def lock(
        self,
        key: str,
        ttl: float | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
        shared: bool = False,
    ) -> AsyncIterator[LockInfo]:
        """Hold `key` for the duration of the block, renewing it; release it on exit.

        Raises what `acquire()` raises; raises LockLostError (after cancelling the block) when
        the lock is lost while the block runs.
        """
        info = await self.acquire(key, ttl, wait=wait, timeout=timeout, renew=True, shared=shared)
        full = self.full_key(key, shared)
        held = self._held[(full, info.id)]
        task = asyncio.current_task()
        held.body = task
        try:
            yield info
        except asyncio.CancelledError:
            # our own cancellation (the lock was lost) becomes LockLostError; any other stays
            if held.cancelled and task is not None and task.uncancel() == 0:
                raise LockLostError(f"lock {key!r} was lost while held") from None
            raise
        finally:
            held.body = None
            if not held.lost and (full, info.id) in self._held:
                with suppress(NotLockOwnerError):
                    await self.release(key, info.id, shared=shared)
        if held.lost:
            # the block swallowed our cancellation and finished: still say the lock was lost
            if held.cancelled and task is not None:
                task.uncancel()
            raise LockLostError(f"lock {key!r} was lost while held")

    # -- renewal ----------------------------------------------------------

    def _check(self, key: str, ttl: float | None) -> float:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a lock key must be a non-empty string, got {key!r}")
        if ttl is None:
            ttl = self.ttl
        if not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        return float(ttl)

    def _renew_due(self, held: _Held) -> None:
        held.timer = None
        task = self._loop.create_task(self._renew_held(held))
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)

    async def _renew_held(self, held: _Held) -> None:
        sent = self._loop.time()
        try:
            renewed: bool | None = await self._renew(held.key, held.id, held.ttl)
        except Exception as exc:
            renewed = None
            self.logger.warning("lock renewal failed", lock=held.key, error=repr(exc))
        if self._held.get((held.key, held.id)) is not held:
            return  # released while the renewal was in flight
        if renewed:
            held.renewed_at = sent
            delay = held.ttl / 3
        elif renewed is None and sent - held.renewed_at < held.ttl:
            # a transient error: retry before the lock could expire
            delay = min(held.ttl / 3, max(held.renewed_at + held.ttl - self._loop.time(), 0) / 2)
        else:
            del self._held[(held.key, held.id)]
            self._lose(held, "renewal found it expired or taken" if renewed is False else "renewals kept failing")
            return
        held.timer = self._loop.call_later(delay, self._renew_due, held)

    def _lose(self, held: _Held, reason: str) -> None:
        held.lost = True
        self.counts["lost"] += 1
        self.logger.warning("lock lost", lock=held.key, lock_id=held.id, reason=reason)
        if held.body is not None and not held.body.done():
            held.cancelled = held.body.cancel()
