"""`StreamListener`: feed the RPC requests of one topic to the dispatcher, at least once.

    services:
      - cls: MemoryStream            # or RedisStream (needs RedisConnection)
      - cls: Streams                 # topic locks, streams.status; the listener attaches to it
      - cls: StreamListener
        settings: {topic: rpc, max_deliveries: 5}

Life of a message: read (it becomes *pending* for this consumer), run through
`RPCServer.handle`, then acknowledged; a failed one is left pending for a claim, or
dead-lettered. The listener is three parts over one run-time state (`state.py`), each
readable alone: the reader (`reader.py`: own pending messages, claims, new ones), the
batch runner (`batches.py`: run, acknowledge, dead-letter) and the upkeep (`upkeep.py`:
topic lock, keeping messages in hand fresh, trimming). How a batch's acknowledgements
ride on the reader's next read is explained in `acks.py`.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from typing import Any

from kaiju.rpc.access import parse_scope
from kaiju.rpc.methods import method
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import NonNegative, PositiveInt, ScopeName
from kaiju.streams.base import GroupInfo, StreamError, topic_key
from kaiju.streams.batches import BatchRunner
from kaiju.streams.reader import Reader
from kaiju.streams.service import Streams
from kaiju.streams.state import ListenerState
from kaiju.streams.upkeep import Upkeep
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = ["StreamListener", "default_consumer_name"]


def default_consumer_name() -> str:
    """`<hostname>-<pid>`: stable for the life of the process, distinct between processes."""
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamListener(Service):
    """Consume one topic and run each message (an RPC request or batch) through `RPCServer`.

    Depends on the `Streams` service (`streams`: its backend stores the messages, its topic
    locks pause this listener, its `streams.status` lists it) and the RPC server (`rpc`).
    Start raises `StreamError` when the group cannot be created. RPC method: `<name>.status`.
    """

    transport = True  # `kaiju-run call` consumes nothing

    streams: Streams
    rpc: RPCServer
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a span of each message processed (none: the
    process's own tracer provider, when it set one; else no spans)."""

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
    max_concurrency: PositiveInt | None = None
    """Messages of this listener processed at once, retries included (each batch runs its
    messages in order, so this many batches are in flight). None: `max_parallel_batches`."""
    block_ms: PositiveInt = 1000
    """How long one read waits for new messages (kept below the Redis socket timeout)."""
    claim_idle_ms: PositiveInt = 30_000
    """A message pending this long (its consumer died, or it failed) is claimed and run again.
    Must exceed the longest processing time of a message; in-hand messages are kept fresh."""
    max_deliveries: PositiveInt = 5
    """Deliveries after which a message that keeps failing goes to the dead-letter stream
    (without `retry_delays`; a failed message is delivered again after `claim_idle_ms`)."""
    retry_delays: list[NonNegative] | None = None
    """Seconds before each new delivery of a failed message, e.g. `[1, 5, 30]` (jittered up
    to a quarter more); after the last one, the dead letters. The message stays in hand
    meanwhile. None: redelivered after `claim_idle_ms`, up to `max_deliveries`."""
    retry_on: list[str] | None = None
    """The error types worth a retry: JSON-RPC types (`RequestTimeout`, `Overloaded`, an
    app's `RPCError`) or the class names of a method's own exceptions (`ConnectionError`
    covers its subclasses). Any other failure goes to the dead letters at once. None: every
    failure but an invalid request is retried."""
    maxlen: PositiveInt | None = None
    """Trim the stream to about this many entries, never dropping one a group still needs
    (None: no trimming)."""
    scope: ScopeName = ScopeName("SYSTEM")
    """Scope the requests run with (stream messages come from trusted apps: SYSTEM)."""
    use_sessions: bool = False
    """Let a message name its session (`Session-Id`) or bring credentials (`Authorization`),
    loaded by the RPC server's sessions / auth services as for HTTP requests; the session's
    scope then replaces `scope`. Off: those two headers are dropped."""
    stop_timeout: NonNegative = 10.0
    """Seconds stop() may take, mostly waiting for messages in hand; never more than three
    quarters of the app's `main.shutdown_timeout` (the rest is for the services stopped after
    the listener). What is not finished by then stays pending, unacknowledged."""
    lock_check_ms: PositiveInt = 1000
    """How often the cluster-wide topic lock is checked."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.counters = {"processed": 0, "failed": 0, "dead_lettered": 0, "claimed": 0}
        self.active: ListenerState | None = None  # the run-time state, from start() to stop()
        self._tasks: tuple[asyncio.Task, asyncio.Task] | None = None  # the reader's and the upkeep's
        self._runner: BatchRunner | None = None

    def check(self) -> None:
        """`use_sessions` needs a sessions or an auth service on the RPC server (SettingError)."""
        if self.use_sessions and self.rpc.sessions is None and self.rpc.auth is None:
            raise SettingError(
                "use_sessions", f'expected a sessions or auth service on "{self.rpc.name}", it has neither'
            )

    # -- where it reads --------------------------------------------------------

    @property
    def stream_key(self) -> str:
        """The stream of the topic: `<env>.<app>._stream.<topic>` (or the shared namespace's)."""
        return topic_key(self.app.shared_namespace if self.shared else self.app.namespace, self.topic)

    @property
    def group_name(self) -> str:
        """The consumer group: `group`, else the app's name."""
        return self.group or self.app.name

    @property
    def consumer_name(self) -> str:
        """This consumer's name: `consumer`, else `<hostname>-<pid>`."""
        return self.consumer or default_consumer_name()

    # -- lifetime ----------------------------------------------------------------

    async def start(self) -> None:
        self.check()  # also when started without a kaiju entrypoint
        self.counters = {"processed": 0, "failed": 0, "dead_lettered": 0, "claimed": 0}
        backend = self.streams.backend
        await backend.create_group(self.stream_key, self.group_name)
        state = ListenerState(self, backend, self.stream_key, self.group_name, self.consumer_name, self.counters)
        state.set_paused(await self.streams.topic_locked(state.stream_key))
        runner = BatchRunner(state, self.rpc, parse_scope(self.scope), self.use_sessions, tracing_of(self.telemetry))
        self._runner = runner
        loop = asyncio.get_running_loop()
        self.active = state
        self._tasks = (
            loop.create_task(Reader(state, runner.start).run(), name=f"{self.name}.read"),
            loop.create_task(Upkeep(state, self.streams.topic_locked).run(), name=f"{self.name}.upkeep"),
        )
        self.streams.attach(self)
        self.logger.info("listening", stream=state.stream_key, group=state.group, consumer=state.consumer)

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop reading; give messages in hand `stop_timeout` seconds (at most three quarters of
        the app's `shutdown_timeout`), then cancel them unacknowledged."""
        state, tasks = self.active, self._tasks
        if state is None or tasks is None:
            return
        reader, upkeeper = tasks
        loop = asyncio.get_running_loop()
        # the whole stop fits in the app's budget, with a quarter left for the layers below
        # (the RPC server, the backend, the connection) to stop in too
        budget = self.app.shutdown_timeout
        limit = min(self.stop_timeout, budget * 0.75) if budget else self.stop_timeout
        deadline = loop.time() + limit
        soft = deadline - min(1.0, limit / 4)  # the rest is for cancelling, and acking what did finish
        state.stop()
        upkeeper.cancel()
        if state.reading and not state.backend.cancel_safe_reads:
            # a read in flight ends within block_ms; what it returns is processed like the rest
            # (cancelled, a Redis read could leave what it took pending until claimed)
            await asyncio.wait([reader], timeout=max(soft - loop.time(), 0))
        if not reader.done():
            reader.cancel()  # waiting for a slot, a batch or the topic lock: nothing lost
        handed_back = self._runner.retries.cancel() if self._runner is not None else []
        if state.batches:
            _, late = await asyncio.wait(state.batches, timeout=max(soft - loop.time(), 0))
            handed_back += [i for i in state.in_hand if i not in handed_back]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=max(deadline - loop.time(), 0.01))
                self.logger.warning("left messages pending at stop", batches=len(late))
        await self._hand_back(handed_back, deadline)
        await asyncio.wait([reader, upkeeper], timeout=max(deadline - loop.time(), 0.01))
        self.streams.detach(self)
        self.active = None
        self.logger.info("stopped", extra=self.counters)

    async def _hand_back(self, ids: list[str], deadline: float) -> None:
        """Make the messages this listener still holds claimable by any consumer at once."""
        state = self.active
        if not ids or state is None:
            return
        try:
            async with asyncio.timeout_at(deadline):
                await state.backend.release(state.stream_key, state.group, state.consumer, ids)
        except (StreamError, TimeoutError) as exc:  # they stay pending: claimed after claim_idle_ms
            self.logger.warning("messages not handed back at stop", count=len(ids), error=str(exc))
        else:
            self.logger.info("handed back messages at stop", count=len(ids))

    def recheck_lock(self) -> None:
        """Check the topic lock now rather than at the next `lock_check_ms` tick."""
        if self.active is not None:
            self.active.lock_recheck.set()

    # -- status ------------------------------------------------------------

    @property
    def state(self) -> str:
        """ "running", "paused" (the reader is parked on the topic lock), "pausing" or "stopped"."""
        s = self.active
        if s is None or not s.running:
            return "stopped"
        if s.paused:
            return "paused" if s.parked else "pausing"
        return "running"

    @property
    def in_hand(self) -> tuple[str, ...]:
        """The ids of the messages taken and not yet acknowledged, dead-lettered or left."""
        return tuple(self.active.in_hand) if self.active is not None else ()

    @property
    def backlog(self) -> GroupInfo | None:
        """The group's length, pending count and lag, as the upkeep last read them (None: not yet)."""
        return self.active.backlog if self.active is not None else None

    async def health(self) -> None:
        """Raise when the listener is not reading: stopped, its reader gone, or its stream
        out of reach (the health check of `/health/ready`)."""
        if self.state == "stopped" or self._tasks is None or self._tasks[0].done():
            raise RuntimeError(f"not reading {self.stream_key}")
        await self.streams.backend.group_info(self.stream_key, self.group_name)  # StreamError when out of reach

    def metrics(self) -> Iterator[Any]:
        """Messages processed, failed, dead-lettered and claimed; the group's pending and lag
        (as last read by the upkeep)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = self.counters
        names = {"processed": "processed", "failed": "failed", "dead_lettered": "dead-lettered", "claimed": "claimed"}
        for key, text in names.items():
            family = CounterMetricFamily(
                f"kaiju_stream_messages_{key}", f"Stream messages {text}", labels=["topic", "listener"]
            )
            family.add_metric([self.topic, self.name], counters[key])
            yield family
        pending = GaugeMetricFamily(
            "kaiju_stream_pending", "Messages delivered to the group and not yet acknowledged", labels=["topic"]
        )
        lag = GaugeMetricFamily(
            "kaiju_stream_lag", "Messages not yet delivered to any consumer of the group", labels=["topic"]
        )
        info = self.backlog
        if info is not None:
            pending.add_metric([self.topic], info.pending)
            if info.lag is not None:
                lag.add_metric([self.topic], info.lag)
        yield from (pending, lag)

    @method
    async def status(self) -> dict[str, Any]:
        """This listener's topic: stream length, pending and lag of its group, messages in hand,
        and its counters (processed, failed attempts, dead-lettered, claimed)."""
        info: dict[str, Any] = {"length": None, "pending": None, "lag": None}
        try:
            g = await self.streams.backend.group_info(self.stream_key, self.group_name)
            info = {"length": g.length, "pending": g.pending, "lag": g.lag}
        except StreamError as exc:
            info["error"] = str(exc)
        return {
            "topic": self.topic,
            "stream": self.stream_key,
            "group": self.group_name,
            "consumer": self.consumer_name,
            "state": self.state,
            "in_hand": len(self.in_hand),
            **info,
            **self.counters,
        }
