"""`StreamListener`: feed the RPC requests of one topic to the dispatcher, at least once.

    services:
      - cls: MemoryStream            # or RedisStream (needs RedisConnection)
      - cls: Streams                 # topic locks, streams.status; the listener attaches to it
      - cls: StreamListener
        settings: {topic: rpc, max_deliveries: 5}

Life of a message: read (it becomes *pending* for this consumer), run through
`RPCServer.handle`, then acknowledged. A message is acknowledged only once the dispatcher
has finished with it (success), or once it is copied to the dead-letter stream
`<topic>.dead` (a request no redelivery can cure — not JSON, invalid UTF-8, nested too
deeply, not JSON-RPC, invalid params, or one the dispatcher fails on — a deadline already
passed, or `max_deliveries` reached). A failed message is left pending: after `claim_idle_ms` a live
consumer (maybe this one) claims it and runs it again.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from typing import Any

from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.rpc.access import Scope, parse_scope
from kaiju.rpc.errors import InternalError, InvalidRequest, RequestTimeout
from kaiju.rpc.methods import method
from kaiju.rpc.protocol import AUTHORIZATION, DEADLINE, SESSION_ID
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service
from kaiju.runtime.types import PositiveInt, ScopeName
from kaiju.streams.base import GroupMissing, StreamError, StreamMessage, StreamUnavailable, topic_key
from kaiju.streams.dispatch import MESSAGE_ID, Outcome, as_request, error_object, response_error
from kaiju.streams.service import Streams

__all__ = ["StreamListener", "default_consumer_name"]


def default_consumer_name() -> str:
    """`<hostname>-<pid>`: stable for the life of the process, distinct between processes."""
    return f"{socket.gethostname()}-{os.getpid()}"


# message headers not handed to the dispatcher (lower case)
_NOT_PASSED = frozenset({MESSAGE_ID.lower()})
_NOT_PASSED_NO_SESSIONS = frozenset({MESSAGE_ID.lower(), SESSION_ID.lower(), AUTHORIZATION.lower()})
_DEADLINE = DEADLINE.lower()


# where the reader is, for a batch deciding whether to hand it its acks
_AT_SLOT, _READING, _ELSEWHERE = "slot", "reading", "elsewhere"


class _Backoff:
    """Growing, jittered pauses between attempts to reach a lost server."""

    def __init__(self, first: float = 0.05, limit: float = 5.0):
        self.first, self.limit, self.current = first, limit, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.limit)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.current = self.first


class StreamListener(Service):
    """Consume one topic and run each message (an RPC request or batch) through `RPCServer`.

    Depends on the `Streams` service (`streams`: its backend stores the messages, its topic
    locks pause this listener, its `streams.status` lists it) and the RPC server (`rpc`).
    Start raises ValueError for a bad setting and `StreamError` when the group cannot be
    created. RPC method: `<name>.status`.
    """

    transport = True  # `kaiju-run call` consumes nothing

    streams: Streams
    rpc: RPCServer

    topic: str = "rpc"
    """Topic to consume; its stream is `{<env>.<app>._stream.<topic>}`."""
    shared: bool = False
    """Use the namespace shared by all apps of the env (`{<env>._shared._stream.<topic>}`)."""
    group: str | None = None
    """Consumer group: every group gets every message once. Default: the app name."""
    consumer: str | None = None
    """This consumer's name in the group. Default: `<hostname>-<pid>`. A fixed name lets a
    restarted process re-read its own pending messages at once instead of after `claim_idle_ms`."""
    batch_size: PositiveInt = 16
    """Messages taken per read."""
    max_parallel_batches: PositiveInt = 2
    """Batches in flight at once (messages inside a batch run one after another, in order)."""
    block_ms: PositiveInt = 1000
    """How long one read waits for new messages (kept below the Redis socket timeout)."""
    claim_idle_ms: PositiveInt = 30_000
    """A message pending this long (its consumer died, or it failed) is claimed and run again.
    Must exceed the longest processing time of a message; in-hand messages are kept fresh."""
    max_deliveries: PositiveInt = 5
    """Deliveries after which a message that keeps failing goes to the dead-letter stream."""
    maxlen: PositiveInt | None = None
    """Trim the stream to about this many entries, never dropping one a group still needs
    (None: no trimming)."""
    scope: ScopeName = "SYSTEM"
    """Scope the requests run with (stream messages come from trusted apps: SYSTEM)."""
    use_sessions: bool = False
    """Let a message name its session (`Session-Id`) or bring credentials (`Authorization`),
    loaded by the RPC server's sessions / auth services as for HTTP requests; the session's
    scope then replaces `scope`. Off: those two headers are dropped."""
    stop_timeout: float = 10.0
    """Seconds stop() may take, mostly waiting for messages in hand; never more than three
    quarters of the app's `main.shutdown_timeout` (the rest is for the services stopped after
    the listener). What is not finished by then stays pending, unacknowledged."""
    lock_check_ms: PositiveInt = 1000
    """How often the cluster-wide topic lock is checked."""

    async def start(self) -> None:
        namespace = self.app.shared_namespace if self.shared else self.app.namespace
        self.stream_key = topic_key(namespace, self.topic)
        self.group_name = self.group or self.app.name
        self.consumer_name = self.consumer or default_consumer_name()
        self.backend = self.streams.backend
        self._scope: Scope = parse_scope(self.scope)
        self._dropped = _NOT_PASSED if self.use_sessions else _NOT_PASSED_NO_SESSIONS
        if self.use_sessions and self.rpc.sessions is None and self.rpc.auth is None:
            raise ValueError(
                f"{self.name}: use_sessions needs a sessions or auth service on {self.rpc.name}, and it has neither"
            )
        self.counters = {"processed": 0, "failed": 0, "dead_lettered": 0, "claimed": 0}
        self._running = True
        self._paused = False
        self._parked = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._lock_recheck = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_parallel_batches)
        self._in_hand: dict[str, float] = {}
        self._batches: set[asyncio.Task] = set()
        # ids of finished batches handed to the reader, whose next read acknowledges them in
        # the same round trip; `_acks_landed` tells those batches whether that read went through
        self._acks: list[list[str]] = []
        self._acks_landed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reader_at = _ELSEWHERE  # where the reader is: whether a finished batch may hand it its acks
        self._last_full = False  # the last read came back full: the one in flight should not wait
        self._backoff = _Backoff()
        self._claim_cursor = "0-0"
        self._reading = False  # the reader is in a call to the backend (stop() lets it finish)
        # how often idle messages are looked for, and in-hand ones kept fresh
        self._claim_every = min(max(self.claim_idle_ms / 4000, 0.02), 5.0)
        await self.backend.create_group(self.stream_key, self.group_name)
        self._paused = await self._topic_locked()
        if self._paused:
            self._unpaused.clear()
        self.streams.attach(self)
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_loop(), name=f"{self.name}.read")
        self._upkeeper = loop.create_task(self._upkeep_loop(), name=f"{self.name}.upkeep")
        self.logger.info("listening", stream=self.stream_key, group=self.group_name, consumer=self.consumer_name)

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop reading; give messages in hand `stop_timeout` seconds (at most three quarters of
        the app's `shutdown_timeout`), then cancel them unacknowledged."""
        if not getattr(self, "_running", False):
            return
        loop = asyncio.get_running_loop()
        # the whole stop fits in the app's budget, with a quarter left for the layers below
        # (the RPC server, the backend, the connection) to stop in too
        limit = self.stop_timeout
        budget = getattr(self.app, "shutdown_timeout", None)
        if budget:
            limit = min(limit, budget * 0.75)
        deadline = loop.time() + limit
        soft = deadline - min(1.0, limit / 4)  # the rest is for cancelling, and acking what did finish
        self._running = False
        self._unpaused.set()
        self._lock_recheck.set()
        self._upkeeper.cancel()
        if self._reading and not self.backend.cancel_safe_reads:
            # a read in flight ends within block_ms; what it returns is processed like the rest
            # (cancelled, a Redis read could leave what it took pending until claimed)
            await asyncio.wait([self._reader], timeout=max(soft - loop.time(), 0))
        if not self._reader.done():
            self._reader.cancel()  # waiting for a slot, a batch or the topic lock: nothing lost
        if self._batches:
            _, late = await asyncio.wait(self._batches, timeout=max(soft - loop.time(), 0))
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=max(deadline - loop.time(), 0.01))
                self.logger.warning("left messages pending at stop", batches=len(late))
        await asyncio.wait([self._reader, self._upkeeper], timeout=max(deadline - loop.time(), 0.01))
        self.streams.detach(self)
        self.logger.info("stopped", **self.counters)

    # -- reading ----------------------------------------------------------

    async def _read_loop(self) -> None:
        # own pending messages first (left by a previous run), then claiming takes turns with
        # reading, in the reader's own slot: a claim never waits for a slot that a blocking read
        # holds, nor for a backlog to drain (see _read_turns)
        try:
            await self._read_turns()
        finally:
            self._reader_at = _ELSEWHERE
            self._refuse_acks()

    async def _read_turns(self) -> None:
        recovering, after = True, "0-0"  # own pending messages first (left by a previous run)
        next_claim, claimed_last = time.monotonic(), False
        while self._running:
            self._reader_at = _AT_SLOT
            await self._slots.acquire()
            self._reader_at = _ELSEWHERE
            if not self._running:  # stop() came while we waited for the slot: take nothing more
                self._slots.release()
                break
            try:
                if self._paused:
                    self._refuse_acks()
                    self._parked = True
                    await self._unpaused.wait()
                    self._parked = False
                    if not self._running:
                        break
                self._reading = True
                now = time.monotonic()
                if recovering:
                    self._refuse_acks()
                    msgs = await self.backend.read_pending(
                        self.stream_key, self.group_name, self.consumer_name, self.batch_size, after
                    )
                    if msgs:
                        after = msgs[-1].id
                    else:
                        recovering = False
                elif now >= next_claim and not claimed_last:
                    claimed_last = True
                    self._refuse_acks()
                    more, msgs = await self._claim()
                    # a scan cut short goes on at the next turn, after one read
                    next_claim = now if more else now + self._claim_every
                else:
                    claimed_last = False
                    # a claim due: look for new messages without waiting; else wait no longer than until it is
                    wait_ms = max(min(self.block_ms, int((next_claim - now) * 1000) + 1), 0)
                    self._reader_at = _READING
                    msgs = await self._read_new(wait_ms)
                    self._reader_at = _ELSEWHERE
                    self._last_full = len(msgs) >= self.batch_size
                self._reading = False
                self._backoff.reset()
            except StreamUnavailable as exc:
                self._reading = False
                self._reader_at = _ELSEWHERE
                self._refuse_acks()
                self._slots.release()
                await self._wait_for_server(exc)
                continue
            except GroupMissing:
                self._reading = False
                self._reader_at = _ELSEWHERE
                self._refuse_acks()
                self._slots.release()
                await self._recreate_group()
                continue
            except asyncio.CancelledError:
                self._reading = False
                self._reader_at = _ELSEWHERE
                self._refuse_acks()
                self._slots.release()
                raise
            except Exception as exc:  # never let one bad reply end the reading
                self._reading = False
                self._reader_at = _ELSEWHERE
                self._refuse_acks()
                self._slots.release()
                self.logger.exception("stream read failed")
                await self._wait_for_server(exc)
                continue
            if not msgs:
                self._slots.release()
                continue
            self._spawn(msgs)
            if len(msgs) < self.batch_size:
                self._refuse_acks()  # the batches waited for here must not wait for a read
                # drained: wait for a batch in hand to end before reading again, so that batches
                # grow with the load instead of shrinking to one message (and two round trips)
                # each; one batch, not all, and at most block_ms: a slow message must not hold
                # up the others while a slot is free
                await asyncio.wait(self._batches, timeout=self.block_ms / 1000, return_when=asyncio.FIRST_COMPLETED)

    def _refuse_acks(self) -> None:
        """Give back the acks handed over: the reader is not going to read right away, so the
        batches send them themselves."""
        if self._acks:
            landed = self._acks_landed
            self._acks = []
            self._acks_landed = asyncio.get_running_loop().create_future()
            landed.set_result(False)

    async def _read_new(self, wait_ms: int) -> list[StreamMessage]:
        """Read new messages, acknowledging on the way those the finished batches handed over."""
        acks, landed = self._acks, self._acks_landed
        if not acks:
            return await self.backend.read_new(
                self.stream_key, self.group_name, self.consumer_name, self.batch_size, wait_ms
            )
        self._acks = []
        self._acks_landed = asyncio.get_running_loop().create_future()
        ids = [i for chunk in acks for i in chunk]
        try:
            msgs = await self.backend.ack_and_read_new(
                self.stream_key, self.group_name, self.consumer_name, ids, self.batch_size, wait_ms
            )
        except BaseException:
            landed.set_result(False)  # the batches acknowledge on their own
            raise
        landed.set_result(True)
        return msgs

    def _spawn(self, msgs: list[StreamMessage]) -> None:
        """Run `msgs` as one batch in its own task; the batch holds one slot until it ends."""
        now = time.monotonic()
        for msg in msgs:
            self._in_hand[msg.id] = now
        task = asyncio.get_running_loop().create_task(self._run_batch(msgs))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, msgs: list[StreamMessage]) -> None:
        done: list[str] = []
        released = False
        try:
            for msg in msgs:
                try:
                    if await self._process(msg):
                        done.append(msg.id)
                except StreamError as exc:  # left pending: redelivered after claim_idle_ms
                    self.logger.warning("message left pending", message_id=msg.id, error=str(exc))
                except Exception:
                    self.logger.exception("message left pending", message_id=msg.id)
            at = self._reader_at
            if done and self._running and (at is _AT_SLOT or (at is _READING and self._last_full)):
                # The reader is about to read (the freed slot wakes it), or is in a read that
                # should come back at once: its next read carries these ids (one round trip
                # per batch instead of two). Wherever else it goes first (parked, claiming,
                # waiting for a batch, stopping) it hands them back and this batch
                # acknowledges them itself, as before.
                landed = self._acks_landed
                self._acks.append(done)
                self._slots.release()
                released = True
                if await asyncio.shield(landed):
                    done = []
        finally:
            try:
                if done:
                    await self._ack(done)
            finally:
                for msg in msgs:
                    self._in_hand.pop(msg.id, None)
                if not released:
                    self._slots.release()

    async def _process(self, msg: StreamMessage) -> bool:
        """Run one message; True when it is to be acknowledged (it succeeded)."""
        if msg.defect is not None:
            await self._dead_letter(msg, error_object(InvalidRequest, msg.defect))
            return False
        if msg.deliveries > self.max_deliveries:
            given_up = f"not acknowledged after {msg.deliveries - 1} deliveries"
            await self._dead_letter(msg, error_object(InternalError, given_up, type="MaxDeliveries"))
            return False
        # one pass over the headers: the deadline (first spelling wins) and those passed on
        dropped = self._dropped
        headers: dict[str, str] = {}
        deadline = None
        for key, value in msg.headers.items():
            lower = key.lower()
            if lower == _DEADLINE and deadline is None:
                deadline = value
            if lower not in dropped:
                headers[key] = value
        if deadline is not None:
            try:
                expired = float(deadline) < time.time()
            except ValueError:
                expired = False  # the dispatcher rejects the malformed header with its own error
            if expired:
                late = "deadline passed before the message was run"
                await self._dead_letter(msg, error_object(RequestTimeout, late, deadline=deadline))
                return False
        # the stream's own id names this message on every delivery (a Correlation-Id does not:
        # a producer stamps its caller's on every message it writes): the key to deduplicate on
        headers[MESSAGE_ID] = f"{self.stream_key}/{msg.id}"
        try:
            response, _ = await self.rpc.handle(as_request(msg.body), headers, scope=self._scope, transport="stream")
            outcome = response_error(response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The dispatcher answers every bad input and every failing method with an error: an
            # exception out of it is a fault this very message triggers, and would again on each
            # redelivery. Dead-letter it now, with one traceback, rather than max_deliveries.
            self.logger.exception("dispatcher failed, message dead-lettered", message_id=msg.id)
            outcome = Outcome(error_object(InternalError, f"the dispatcher failed on this message: {exc!r}"), permanent=True)
        if outcome.error is None:
            self.counters["processed"] += 1
            return True
        self.counters["failed"] += 1
        if outcome.permanent or msg.deliveries >= self.max_deliveries:
            await self._dead_letter(msg, outcome.error)
        else:
            self.logger.info("message failed, left for redelivery", message_id=msg.id,
                             deliveries=msg.deliveries, error=outcome.error.get("message"))
        return False

    async def _ack(self, ids: list[str]) -> None:
        # an ack lost to a dropped connection is retried; if it never lands the message is
        # redelivered (a duplicate, never a loss)
        while True:
            try:
                await self.backend.ack(self.stream_key, self.group_name, ids)
                return
            except StreamUnavailable as exc:
                if not self._running:
                    self.logger.warning("ack lost at stop, messages will be redelivered", count=len(ids))
                    return
                await self._wait_for_server(exc)
            except GroupMissing:
                return  # the group is gone with its pending list: nothing left to acknowledge

    async def _dead_letter(self, msg: StreamMessage, error: dict[str, Any]) -> None:
        while True:
            try:
                await self.backend.dead_letter(self.stream_key, self.group_name, self.consumer_name, msg, error)
                break
            except StreamUnavailable as exc:
                if not self._running:
                    return  # still pending: the next consumer dead-letters it
                await self._wait_for_server(exc)
            except GroupMissing:
                return
        self.counters["dead_lettered"] += 1
        self.logger.warning("message dead-lettered", message_id=msg.id, deliveries=msg.deliveries,
                            error=error.get("message"), stream=self.stream_key + DEAD_LETTER_SUFFIX)

    async def _wait_for_server(self, exc: Exception) -> None:
        delay = self._backoff.next()
        self.logger.warning("stream server unavailable, retrying", error=str(exc), retry_in=round(delay, 3))
        await asyncio.sleep(delay)

    async def _recreate_group(self) -> None:
        self.logger.warning("group missing, creating it again", group=self.group_name, stream=self.stream_key)
        try:
            await self.backend.create_group(self.stream_key, self.group_name)
        except StreamError as exc:
            await self._wait_for_server(exc)

    # -- upkeep: topic lock, keeping in-hand messages fresh, trimming -----------

    async def _upkeep_loop(self) -> None:
        claim_every = self._claim_every
        lock_every = self.lock_check_ms / 1000
        next_claim = next_lock = time.monotonic()
        # consumers gone quiet (dead processes' names) are forgotten after an hour, or 10 claim periods
        prune_every = max(3600.0, self.claim_idle_ms / 100)
        next_prune = next_claim + prune_every
        last_trim, trimmed_at = 0.0, 0  # trim only after new messages were processed
        while self._running:
            try:
                await asyncio.wait_for(self._lock_recheck.wait(), max(min(next_claim, next_lock) - time.monotonic(), 0))
            except asyncio.TimeoutError:
                pass
            if not self._running:
                return
            try:
                now = time.monotonic()
                if self._lock_recheck.is_set() or now >= next_lock:
                    self._lock_recheck.clear()
                    next_lock = now + lock_every
                    self._set_paused(await self._topic_locked())
                if now >= next_claim:
                    next_claim = now + claim_every
                    await self._touch_in_hand(now)
                    if now >= next_prune:
                        next_prune = now + prune_every
                        await self.backend.prune_consumers(self.stream_key, self.group_name, int(prune_every * 1000))
                    if self.maxlen and self.counters["processed"] != trimmed_at and now - last_trim >= 1.0:
                        trimmed_at = self.counters["processed"]
                        last_trim = now
                        await self.backend.trim(self.stream_key, self.maxlen)
            except asyncio.CancelledError:
                raise
            except GroupMissing:
                await self._recreate_group()
            except StreamError as exc:
                await self._wait_for_server(exc)
            except Exception:
                self.logger.exception("stream upkeep failed")
                await asyncio.sleep(claim_every)

    async def _touch_in_hand(self, now: float) -> None:
        stale = self.claim_idle_ms / 2000
        ids = [i for i, taken in self._in_hand.items() if now - taken >= stale]
        if ids:
            await self.backend.touch(self.stream_key, self.group_name, self.consumer_name, ids)
            for i in ids:
                if i in self._in_hand:
                    self._in_hand[i] = now

    async def _claim(self) -> tuple[bool, list[StreamMessage]]:
        """Take over messages idle longer than `claim_idle_ms` (the caller holds a slot for them);
        returns whether the scan of the pending list is unfinished, and the messages to run."""
        # go on from where the last scan stopped: a scan looks at a bounded stretch of the
        # pending list, and busy entries at its head must not hide idle ones further on
        self._claim_cursor, msgs = await self.backend.claim_idle(
            self.stream_key, self.group_name, self.consumer_name, self.claim_idle_ms, self.batch_size,
            self._claim_cursor,
        )
        msgs = [m for m in msgs if m.id not in self._in_hand]  # our own, still running
        if msgs:
            self.counters["claimed"] += len(msgs)
            self.logger.info("claimed idle messages", count=len(msgs))
        return self._claim_cursor != "0-0", msgs

    # -- topic lock --------------------------------------------------------

    async def _topic_locked(self) -> bool:
        return await self.streams.topic_locked(self.stream_key)

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            self._unpaused.clear()
            self.logger.info("topic locked: pausing", stream=self.stream_key)
        else:
            self._unpaused.set()
            self.logger.info("topic unlocked: resuming", stream=self.stream_key)

    def recheck_lock(self) -> None:
        """Check the topic lock now rather than at the next `lock_check_ms` tick."""
        if getattr(self, "_running", False):
            self._lock_recheck.set()

    # -- status ------------------------------------------------------------

    @property
    def state(self) -> str:
        """"running", "paused" (the reader is parked on the topic lock), "pausing" or "stopped"."""
        if not getattr(self, "_running", False):
            return "stopped"
        if self._paused:
            return "paused" if self._parked else "pausing"
        return "running"

    async def health(self) -> None:
        """Raise when the listener is not reading: stopped, its reader gone, or its stream
        out of reach (the health check of `/health/ready`)."""
        if self.state == "stopped" or self._reader.done():
            raise RuntimeError(f"not reading {self.stream_key}")
        await self.backend.group_info(self.stream_key, self.group_name)  # StreamError when out of reach

    @method
    async def status(self) -> dict[str, Any]:
        """This listener's topic: stream length, pending and lag of its group, messages in hand,
        and its counters (processed, failed attempts, dead-lettered, claimed)."""
        info: dict[str, Any] = {"length": None, "pending": None, "lag": None}
        try:
            g = await self.backend.group_info(self.stream_key, self.group_name)
            info = {"length": g.length, "pending": g.pending, "lag": g.lag}
        except StreamError as exc:
            info["error"] = str(exc)
        return {
            "topic": self.topic,
            "stream": self.stream_key,
            "group": self.group_name,
            "consumer": self.consumer_name,
            "state": self.state,
            "in_hand": len(self._in_hand),
            **info,
            **self.counters,
        }
