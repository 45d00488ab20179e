"""The batch runner of a `StreamListener`: runs the messages the reader took, then
acknowledges, redelivers or dead-letters each.

A batch runs in a task of its own, its messages one after another, in order, each through
`RPCServer.handle(..., wait_notifications=True)`; it holds the slot the reader took for it
until it ends. A message is acknowledged only once the dispatcher has finished with it
(success), or once it is copied to the dead-letter stream (a request no redelivery can
cure, a deadline already passed, `max_deliveries` reached). A failed message is left
pending: after `claim_idle_ms` a live consumer claims it and runs it again. The batch's
acknowledgements ride on the reader's next read when it reads next (`acks.py`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.rpc.access import Scope
from kaiju.rpc.errors import InternalError, InvalidRequest, RequestTimeout
from kaiju.rpc.protocol import AUTHORIZATION, CORRELATION_ID, DEADLINE, SESSION_ID
from kaiju.rpc.server import RPCServer
from kaiju.streams.base import GroupMissing, StreamError, StreamMessage, StreamUnavailable
from kaiju.streams.dispatch import (
    ACKED,
    DEAD_LETTERED,
    MESSAGE_ID,
    RETRIED,
    Delivery,
    Outcome,
    error_object,
    outcome_of,
)
from kaiju.streams.retries import Failure, Retries, error_types, forget, retried, retry_delay
from kaiju.streams.state import ListenerState

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["BatchRunner"]

# message headers not handed to the dispatcher (lower case)
_NOT_PASSED = frozenset({MESSAGE_ID.lower()})
_NOT_PASSED_NO_SESSIONS = frozenset({MESSAGE_ID.lower(), SESSION_ID.lower(), AUTHORIZATION.lower()})
_DEADLINE = DEADLINE.lower()
_ACKED = Delivery(ACKED)


class BatchRunner:
    """Runs batches of one listener through `rpc`, with the `scope` of its settings; with
    `use_sessions` the Session-Id and Authorization headers of a message are passed on;
    with `tracing` each message is processed inside a span (`kaiju.telemetry.streams`)."""

    def __init__(
        self, state: ListenerState, rpc: RPCServer, scope: Scope, use_sessions: bool, tracing: Tracing | None = None
    ):
        self.state = state
        self.retries = Retries(state, self.start)  # messages waiting for a delayed retry (`retry_delays`)
        self.rpc = rpc
        self.scope = scope
        self.dropped = _NOT_PASSED if use_sessions else _NOT_PASSED_NO_SESSIONS
        self.run_one: Callable[[StreamMessage], Awaitable[Delivery]] = self.process
        if tracing is not None:
            from kaiju.telemetry.streams import traced_process

            self.run_one = functools.partial(
                traced_process, tracing, self.process, state=state, topic=state.settings.topic
            )

    def start(self, msgs: list[StreamMessage]) -> None:
        """Run `msgs` as one batch in its own task; the batch holds one slot until it ends."""
        s = self.state
        now = time.monotonic()
        for msg in msgs:
            s.in_hand[msg.id] = now
        task = asyncio.get_running_loop().create_task(self._run(msgs))
        s.batches.add(task)
        task.add_done_callback(s.batches.discard)

    async def _run(self, msgs: list[StreamMessage]) -> None:
        s = self.state
        done: list[str] = []
        released = False
        try:
            for msg in msgs:
                try:
                    if (await self.run_one(msg)).outcome is ACKED:
                        done.append(msg.id)
                except StreamError as exc:  # left pending: redelivered after claim_idle_ms
                    s.logger.warning("message left pending", message_id=msg.id, error=str(exc))
                except Exception:
                    s.logger.exception("message left pending", message_id=msg.id)
            landed = s.acks.offer(done) if done and s.running else None
            if landed is not None:
                # the reader reads next, woken by the slot given back: its read carries the ids;
                # wherever else it goes first it gives them back, and they are sent from here
                s.slots.release()
                released = True
                if await asyncio.shield(landed):
                    done = []
        finally:
            try:
                if done:
                    await self._ack(done)
            finally:
                waiting = self.retries.waiting
                for msg in msgs:
                    if msg.id not in waiting:  # one waiting for its retry stays in hand
                        s.in_hand.pop(msg.id, None)
                if not released:
                    s.slots.release()

    async def process(self, msg: StreamMessage) -> Delivery:
        """Run one message; what came of it: ACKED (it succeeded: to acknowledge), RETRIED
        (left pending) or DEAD_LETTERED."""
        s = self.state
        if msg.defect is not None:
            return await self._dead_letter(msg, error_object(InvalidRequest, msg.defect))
        if msg.deliveries > s.max_deliveries:
            given_up = f"not acknowledged after {msg.deliveries - 1} deliveries"
            return await self._dead_letter(msg, error_object(InternalError, given_up, type="MaxDeliveries"))
        headers, deadline = self._headers(msg)
        if deadline is not None:
            try:
                expired = float(deadline) < time.time()
            except ValueError:
                expired = False  # the dispatcher rejects the malformed header with its own error
            if expired:
                late = "deadline passed before the message was run"
                return await self._dead_letter(msg, error_object(RequestTimeout, late, deadline=deadline))
        seen, token = error_types()
        try:
            outcome = await self._dispatch(msg, headers)
        finally:
            forget(token)
        if outcome.error is None:
            s.counters["processed"] += 1
            return _ACKED
        s.counters["failed"] += 1
        settings = s.settings
        delay = retry_delay(settings.retry_delays, msg.deliveries) if settings.retry_delays is not None else None
        if (
            outcome.permanent
            or msg.deliveries >= s.max_deliveries
            or not retried(outcome.error, seen, s.retry_on)
            or (settings.retry_delays is not None and delay is None)
        ):
            return await self._dead_letter(msg, outcome.error, seen)
        if delay is not None:
            self.retries.schedule(msg, delay)
        s.logger.info(
            "message failed, left for redelivery" if delay is None else "message failed, retried later",
            retry_in=None if delay is None else round(delay, 3),
            message_id=msg.id,
            correlation_id=_correlation_id(msg),
            deliveries=msg.deliveries,
            error=outcome.error.get("message"),
        )
        return Delivery(RETRIED, outcome.error)

    def _headers(self, msg: StreamMessage) -> tuple[dict[str, str], str | None]:
        """The headers passed on, and the message's deadline (the first spelling wins): one pass."""
        dropped = self.dropped
        headers: dict[str, str] = {}
        deadline = None
        for key, value in msg.headers.items():
            lower = key.lower()
            if lower == _DEADLINE and deadline is None:
                deadline = value
            if lower not in dropped:
                headers[key] = value
        # the stream's own id names this message on every delivery (a Correlation-Id does not:
        # a producer stamps its caller's on every message it writes): the key to deduplicate on
        headers[MESSAGE_ID] = f"{self.state.stream_key}/{msg.id}"
        return headers, deadline

    async def _dispatch(self, msg: StreamMessage, headers: dict[str, str]) -> Outcome:
        """How the message's requests ended, from the dispatcher's answer."""
        try:
            answer = await self.rpc.handle(
                msg.body, headers, scope=self.scope, transport="stream", wait_notifications=True
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The dispatcher answers every bad input and every failing method with an error: an
            # exception out of it is a fault this very message triggers, and would again on each
            # redelivery. Dead-letter it now, with one traceback, rather than max_deliveries.
            self.state.logger.exception(
                "dispatcher failed, message dead-lettered", message_id=msg.id, correlation_id=_correlation_id(msg)
            )
            return Outcome(
                error_object(InternalError, f"the dispatcher failed on this message: {exc!r}"), permanent=True
            )
        return outcome_of(answer)

    async def _ack(self, ids: list[str]) -> None:
        # an ack lost to a dropped connection is retried; if it never lands the message is
        # redelivered (a duplicate, never a loss)
        s = self.state
        while True:
            try:
                await s.backend.ack(s.stream_key, s.group, ids)
                return
            except StreamUnavailable as exc:
                if not s.running:
                    s.logger.warning("ack lost at stop, messages will be redelivered", count=len(ids))
                    return
                await s.wait_for_server(exc)
            except GroupMissing:
                return  # the group is gone with its pending list: nothing left to acknowledge

    async def _dead_letter(self, msg: StreamMessage, error: dict[str, Any], seen: Failure | None = None) -> Delivery:
        s = self.state
        details = dead_letter_details(s.settings.name, msg, error, seen)
        while True:
            try:
                await s.backend.dead_letter(s.stream_key, s.group, s.consumer, msg, error, details)
                break
            except StreamUnavailable as exc:
                if not s.running:
                    return Delivery(RETRIED, error)  # still pending: the next consumer dead-letters it
                await s.wait_for_server(exc)
            except GroupMissing:
                return Delivery(RETRIED, error)  # gone with its group: nothing left to deliver
        s.counters["dead_lettered"] += 1
        s.logger.warning(
            "message dead-lettered",
            message_id=msg.id,
            correlation_id=_correlation_id(msg),
            deliveries=msg.deliveries,
            error=error.get("message"),
            stream=s.stream_key + DEAD_LETTER_SUFFIX,
        )
        return Delivery(DEAD_LETTERED, error)


_CORRELATION_ID = CORRELATION_ID.lower()


_TRACEPARENT = "traceparent"


def dead_letter_details(listener: str, msg: StreamMessage, error: dict[str, Any], seen: Failure | None) -> dict:
    """What a dead letter records beside the message: the listener, the error's type and
    message (the method's own exception's, when it raised one), the correlation and trace ids."""
    data = error.get("data")
    kind = seen.types[0] if seen and seen.types else data.get("type") if isinstance(data, dict) else None
    message = seen.message if seen and seen.types else error.get("message")
    trace_id = None
    for key, value in msg.headers.items():
        if key.lower() == _TRACEPARENT:
            parts = value.split("-")
            trace_id = parts[1] if len(parts) == 4 else None
    return {
        "listener": listener,
        "error_type": kind,
        "error_message": message,
        "correlation_id": _correlation_id(msg),
        "trace_id": trace_id,
    }


def _correlation_id(msg: StreamMessage) -> str | None:
    """The Correlation-Id the message was written with (its producer's caller's), for the
    listener's own log lines about it: the request can be found by it in every app's log."""
    for key, value in msg.headers.items():
        if key.lower() == _CORRELATION_ID:
            return value
    return None
