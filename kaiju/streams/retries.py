"""Retries of a `StreamListener`: which failures are retried, after how long, and the
failure's own type for the dead letters.

With `retry_delays` (say `[1, 5, 30]`) a failed message stays in the listener's hand (kept
fresh, so no other consumer claims it) and runs again after the delay of its delivery
(1 s after the first failure, 5 s after the second, ...), jittered up to a quarter more so
that messages failing together do not come back together; after the last delay it is
dead-lettered. Without it a failed message is left pending and claimed again after
`claim_idle_ms`, up to `max_deliveries`. `retry_on` names the error types worth a retry;
any other failure is dead-lettered at once.

A method's own exception reaches the listener as an `InternalError`: the executor tells it
(`kaiju.rpc.context.failures`, set to the batch's `Failure`) the exception's class names (its
MRO: `ConnectionError` matches a `ConnectionRefusedError`) for the message being run, so
`retry_on` and the dead letter can name it. Nothing is asked of a call that succeeds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from kaiju.rpc.context import failures
from kaiju.rpc.errors import RPCError
from kaiju.streams.base import StreamMessage

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.streams.state import ListenerState

__all__ = ["Failure", "Retries", "recording", "retried", "retry_delay"]


class Failure:
    """The exception behind the first error of the message being run: its class names (most
    derived first) and its message; empty while nothing failed. Called by the executor
    (`kaiju.rpc.context.note_failure`) with each exception a method raises."""

    __slots__ = ("types", "message")

    def __init__(self) -> None:
        self.types: list[str] = []
        self.message: str | None = None

    def __call__(self, exc: BaseException) -> None:
        if self.types:  # the first failure is the message's (a nested call's comes first)
            return
        cause = exc.base_exc if isinstance(exc, RPCError) and exc.base_exc is not None else exc
        self.types = [cls.__name__ for cls in type(cause).__mro__[:-2]] or [type(cause).__name__]
        self.message = str(cause) or (exc.message if isinstance(exc, RPCError) else type(cause).__name__)


def retry_delay(delays: list[float], deliveries: int) -> float | None:
    """Seconds to wait before delivery `deliveries + 1` of a message that failed its
    delivery `deliveries` (a quarter more at most, at random); None when the list is spent."""
    if deliveries > len(delays):
        return None
    delay = delays[deliveries - 1]
    return delay * random.uniform(1.0, 1.25)


def recording() -> Failure:
    """The `Failure` that records for the message about to run in this task (a batch's): the
    one already set while nothing has failed into it, else a new one, set for the task."""
    seen = failures.get()
    if not isinstance(seen, Failure) or seen.types:
        seen = Failure()
        failures.set(seen)  # left set: a batch's task has a context of its own, gone with it
    return seen


def retried(error: dict[str, Any], seen: Failure, retry_on: frozenset[str] | None) -> bool:
    """Whether a failure is worth a retry: always without `retry_on`, else when its JSON-RPC
    type (`data.type`) or a class name of the exception behind it is listed."""
    if retry_on is None:
        return True
    data = error.get("data")
    kind = data.get("type") if isinstance(data, dict) else None
    return kind in retry_on or not retry_on.isdisjoint(seen.types)


class Retries:
    """The messages of one listener waiting for a delayed retry: each in a task that sleeps,
    takes a slot and starts a one-message batch (`start_batch`, holding the slot)."""

    def __init__(self, state: ListenerState, start_batch: Callable[[list[StreamMessage]], None]):
        self.state = state
        self.start_batch = start_batch
        self.waiting: dict[str, asyncio.Task] = {}

    def schedule(self, msg: StreamMessage, delay: float) -> None:
        """Run `msg` again in `delay` seconds (it stays in hand meanwhile)."""
        task = asyncio.get_running_loop().create_task(self._later(msg, delay), name=f"retry:{msg.id}")
        self.waiting[msg.id] = task

    async def _later(self, msg: StreamMessage, delay: float) -> None:
        s = self.state
        try:
            await asyncio.sleep(delay)
            await s.slots.acquire()
        finally:
            self.waiting.pop(msg.id, None)
        if not s.running:
            s.slots.release()
            return
        self.start_batch([msgspec.structs.replace(msg, deliveries=msg.deliveries + 1)])

    def cancel(self) -> list[str]:
        """Give up every waiting retry (a stop); returns their message ids, still pending."""
        ids = list(self.waiting)
        for task in self.waiting.values():
            task.cancel()
        self.waiting.clear()
        return ids
