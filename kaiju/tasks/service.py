"""What periodic and cron tasks share: the job, the overlap policy, timeouts, singleton runs, status.

Each task is its own service, timed with `loop.call_at` against the wall clock (aiomisc's
recurring callback sleeps a relative delay after each run, which gives neither an
overlap policy, nor a time zone, nor waiting for a run on stop).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from kaiju.histogram import LATENESS_BUCKETS, Histogram, histogram_family
from kaiju.locks.base import LockExistsError, Locks
from kaiju.redis import RedisConnection
from kaiju.rpc.access import Scope
from kaiju.rpc.context import new_correlation_id, request_context
from kaiju.rpc.methods import class_methods
from kaiju.rpc.protocol import CORRELATION_ID, TIMEOUT
from kaiju.rpc.server import RPCServer
from kaiju.runtime.registry import ClassNotFound, import_object, is_async_callable
from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import CheckedStr, NonNegative, Positive, RPCMethodName
from kaiju.tasks.records import MemoryRecords, RedisRecords, RunRecord, TaskRecords, process_name
from kaiju.tasks.schedule import missed_fires, with_jitter
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["MisfirePolicy", "OverlapPolicy", "ScheduledTask", "exposed_methods"]

POLICIES = ("skip", "wait", "cancel")
MISFIRES = ("skip", "once", "all")
# Most missed fires `misfire: all` runs (the latest ones); older ones are given up.
MAX_MISFIRES = 100
# Shares of the app's shutdown budget a task may spend on stop: waiting for a run, then for it to unwind.
_GRACE_SHARE = 0.5
_UNWIND_SHARE = 0.25
_MAX_UNWIND = 1.0  # seconds; a cancelled run unwinding longer than this is left behind
# Fire times this far behind are given up (counted as misses) instead of fired in a burst.
_MAX_CATCH_UP = 10_000
# A singleton fire's lock outlives the next fire by this many seconds: a claim of the same fire
# slowed down on its way (a busy loop, a slow Locks backend) must still find it; one key per
# fire, so a longer life blocks nothing else. A claim later than that is skipped.
_CLAIM_MARGIN = 10.0
# A timer firing this much before its wall-clock time means the clock was set back.
_EARLY = 0.05


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _plain(value: Any) -> Any:
    """`value` if it encodes as JSON, else its repr (a status must always be sendable)."""
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    return value


async def _claimed(fire: float) -> None:
    """The claim of a run that needs none (not a singleton, or a catch-up claimed already)."""
    return None


class OverlapPolicy(CheckedStr):
    """What a fire does while the previous run still goes: skip, wait or cancel."""

    expected = "one of " + ", ".join(POLICIES)

    @classmethod
    def valid(cls, value: str) -> bool:
        return value in POLICIES


class MisfirePolicy(CheckedStr):
    """What a start (or a singleton's takeover) does with fires missed while no process ran
    the task: skip them, run once, or run all of them (the latest `MAX_MISFIRES`)."""

    expected = "one of " + ", ".join(MISFIRES)

    @classmethod
    def valid(cls, value: str) -> bool:
        return value in MISFIRES


def exposed_methods(services: Any) -> set[str]:
    """The RPC method names the given services expose (`<service name>.<method>`), read from
    their classes' `@rpc.method` marks: nothing needs to have started."""
    return {
        f"{service.name}.{spec.name or attr}" for service in services for attr, spec in class_methods(type(service))
    }


class ScheduledTask(Service):
    """What periodic and cron tasks share: the job, the overlap policy, timeouts, counters.

    Subclasses give the schedule through `_first_fire(now)` and `_next_fire(fire)`.
    Settings are checked by their annotations and by `check()` (before anything starts).
    """

    # started under `kaiju-run call` too, where the fleet commands read and change it, but never
    # armed there: start() looks at App.transports
    transport = False

    kind: ClassVar[str] = "task"

    method: RPCMethodName | None = None
    """The RPC method to call (system scope), `service.method`; or `call`."""
    params: dict | list | None = None
    """The method's params, or the function's arguments (a mapping by name, a list by position)."""
    call: str | Callable[..., Awaitable[Any]] | None = None
    """A Python async function to call instead of a method: "package.module:function"."""
    policy: OverlapPolicy = OverlapPolicy("skip")
    """What a fire does while the previous run still goes: "skip", "wait" or "cancel"."""
    timeout: Positive | None = None
    """Seconds a run may take before it is cancelled (none: no limit)."""
    jitter: NonNegative = 0.0
    """Seconds, at most, a fire is delayed by at random (spreads processes' fires apart)."""
    enabled: bool = True
    """Schedule the task (false: it never fires, `fire_now` still runs it)."""
    singleton: bool = False
    """Run each fire in one process of the app only (needs a Locks service)."""
    shutdown_timeout: NonNegative | None = None
    """Seconds stop() waits for a running run before cancelling it (none: half the app's budget)."""
    misfire: MisfirePolicy = MisfirePolicy("skip")
    """Fires missed while no process ran the task (all were down, or a singleton's holder died
    before its run), found from the last run recorded in `store`: "skip" runs none, "once"
    one catch-up run, "all" each of them (the latest 100); never twice across processes."""
    misfire_grace: NonNegative = 0.0
    """Seconds a missed fire may be late and still run as itself, whatever `misfire` says."""

    rpc: RPCServer | None = None
    """The RPCServer a method task calls through."""
    locks: Locks | None = None
    """The locks a singleton task claims its fires with."""
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a trace of each run (none: the process's own
    tracer provider, when it set one; else no spans)."""
    store: RedisConnection | None = None
    """The Redis connection the task's run records and the app's pause and run-now requests
    live in, for every process of the app (none: this process only, so nothing is caught up
    after a restart and `tasks.pause` reaches this process only)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._func: Callable[..., Awaitable[Any]] | None = None  # what `call` names, found by check()
        self._timer: asyncio.TimerHandle | None = None
        self._arming: asyncio.Task | None = None  # a fire due before App.started, waiting for it
        self._running: asyncio.Task | None = None  # the latest run
        self._runs: set[asyncio.Task] = set()  # every run not finished yet (cancelled ones unwinding)
        self._started: set[asyncio.Task] = set()  # those of them whose job has begun
        self._pending: float | None = None  # a fire waiting for the running one (policy "wait")
        self._skip_logged: asyncio.Task | None = None
        self._next_base: float | None = None  # next fire on the schedule, before jitter
        self._next_at: float | None = None  # the same, jitter added
        self._following = math.inf  # the fire after it, so a timer knows cheaply when it is stale
        self._stopping = False
        self.runs = 0
        self.misses = 0
        self.failures = 0
        self.cancelled = 0
        self.elsewhere = 0  # fires run by another process (singleton)
        self.last_fire: float | None = None  # scheduled time of the latest fire
        self.last_lateness: float | None = None  # seconds between it and the timer firing
        self.last_run: float | None = None
        self.last_duration: float | None = None
        self.last_result: Any = None
        self.last_error: str | None = None
        self.timeouts = 0  # runs cut by `timeout` (counted in failures too)
        self.last_success: float | None = None  # unix time a run last finished without error
        self.lateness = Histogram(LATENESS_BUCKETS)  # seconds from each fire's time to its timer
        self._tracing: Tracing | None = None  # from start() on, when the app traces
        self.records: TaskRecords = MemoryRecords()  # the store's, from start() on
        self.fleet_paused = False  # paused across the app (`Tasks.pause`), not by `pause()` alone
        self._catching_up: asyncio.Task | None = None

    # -- settings -----------------------------------------------------

    def check(self) -> None:
        """Reject a job that cannot run: both or neither of `method` and `call`, a `call` that names
        no async function, a `method` no service of the app exposes (or no RPCServer to call it),
        `singleton` without a Locks service. Raises SettingError naming the setting."""
        if (self.method is None) == (self.call is None):
            raise SettingError("method", "expected exactly one of `method` (an RPC method) and `call` (a function)")
        if self.call is not None:
            self._func = self._resolve_call()
        if not self.enabled:
            return
        if self.method is not None:
            if self.rpc is None:
                raise SettingError(
                    "method", f'expected an RPCServer service in the app to call "{self.method}" through'
                )
            if self.method not in exposed_methods(self.app.services.values()):
                raise SettingError("method", f'expected a method some service of the app exposes, got "{self.method}"')
            self._check_params()
        if self.singleton and self.locks is None:
            raise SettingError("singleton", "expected a Locks service in the app for singleton: true")

    def _check_params(self) -> None:
        """`params` fit the signature of the method they are for (else every fire would fail)."""
        from kaiju.rpc.errors import RPCError
        from kaiju.rpc.methods import Method

        for service in self.app.services.values():
            for attr, spec in class_methods(type(service)):
                if f"{service.name}.{spec.name or attr}" == self.method:
                    target = Method(str(self.method), service.name, getattr(service, attr), spec.permission)
                    try:
                        target.validate(self.params)
                    except RPCError as exc:
                        raise SettingError(
                            "params", f"expected the params {self.method} takes, got {self.params!r}: {exc}"
                        ) from None
                    return

    def _resolve_call(self) -> Callable[..., Awaitable[Any]]:
        func: Any = self.call
        if isinstance(func, str):
            if ":" not in func:
                raise SettingError("call", f'expected "package.module:function", got "{func}"')
            try:
                func = import_object(func)
            except ClassNotFound as exc:
                raise SettingError("call", str(exc)) from None
        if not is_async_callable(func):
            raise SettingError("call", f"expected an async function, got {self.call!r}")
        return func

    # -- schedule (subclasses) ------------------------------------------

    @abc.abstractmethod
    def _first_fire(self, now: float) -> float:
        """The first fire time (Unix seconds) for a task started at `now`."""

    @abc.abstractmethod
    def _next_fire(self, fire: float) -> float:
        """The fire time following `fire`."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The schedule as plain data, for `status()`."""

    def next_fires(self, count: int = 2, now: float | None = None) -> list[float]:
        """The first `count` fire times (Unix seconds, before jitter) a start at `now` (default:
        the wall clock now) would arm; `kaiju-run check` prints them, so a swapped field shows."""
        fires = [self._first_fire(time.time() if now is None else now)]
        while len(fires) < count:
            fires.append(self._next_fire(fires[-1]))
        return fires

    # -- lifetime -------------------------------------------------------

    async def start(self) -> None:
        """Arm the schedule (a fire due before the app has started waits for it); raises SettingError
        when `check()` does, for a task started without a kaiju entrypoint."""
        self.check()
        self._tracing = tracing_of(self.telemetry)
        if not self.enabled:
            self.logger.info(f"task {self.name} disabled", task=self.name)
            return
        self._stopping = False
        if self.store is not None and not self.records.shared:
            self.records = RedisRecords(self.store, self.app.namespace)
        if not self.app.transports:  # added at run time under `kaiju-run call`: schedules do not fire there
            self.logger.info(f"task {self.name} not scheduled: the app runs without its transports", task=self.name)
            return
        if self.records.shared and await self._paused_in_store():
            self.fleet_paused = True
            self.pause()
            self.logger.info(f"task {self.name} paused across the app: not scheduled until resumed", task=self.name)
            return
        now = time.time()
        self._arm(self._first_fire(now))
        self.logger.info(f"task {self.name} scheduled, next run {_iso(self._next_at)}", task=self.name)
        if self._handles_misfires:
            self._catching_up = self.loop.create_task(self._catch_up(now), name=f"task:{self.name}:catch-up")

    async def _paused_in_store(self) -> bool:
        try:
            return self.name in await self.records.paused()
        except Exception as exc:  # the store is down: run as configured rather than not at all
            self.logger.warning(f"task {self.name}: cannot read whether it is paused: {exc!r}", task=self.name)
            return False

    # -- missed fires -------------------------------------------------------

    @property
    def _handles_misfires(self) -> bool:
        return self.misfire != "skip" or self.misfire_grace > 0

    def missed_fires(self, last_fire: float, until: float) -> list[float]:
        """The fires after `last_fire` and before `until` that `misfire` and `misfire_grace`
        run (`kaiju.tasks.schedule.missed_fires`)."""
        return missed_fires(self._next_fire, last_fire, until, str(self.misfire), self.misfire_grace, MAX_MISFIRES)

    async def _catch_up(self, until: float) -> None:
        """At start: run the fires missed since the last run recorded, each once across the app."""
        try:
            last = await self.records.last(self.name)
        except Exception as exc:
            self.logger.warning(f"task {self.name}: cannot read its last run: {exc!r}", task=self.name)
            return
        if last is None:
            return  # never ran: nothing was missed
        if not self.missed_fires(last.fire, until):
            self.logger.info(f"task {self.name}: nothing to catch up since {_iso(last.fire)}", task=self.name)
            return
        await self._run_missed(await self._claim_missed(last, until))

    async def _claim_missed(self, last: RunRecord, until: float) -> list[float]:
        """Claim the fires missed between `last` and `until`, oldest first; those claimed here.

        All are claimed before any runs: a claim holds only while no later fire is recorded,
        and the runs of the schedule record later fires meanwhile."""
        fires = self.missed_fires(last.fire, until)
        if fires:
            self.logger.info(f"task {self.name}: {len(fires)} missed fires to catch up", task=self.name)
        claimed = []
        for fire in fires:
            try:
                won = await self.records.claim(self.name, RunRecord(fire, time.time(), "claimed"))
            except Exception as exc:
                self.logger.warning(f"task {self.name}: cannot claim a missed fire: {exc!r}", task=self.name)
                break
            if won:
                claimed.append(fire)
            else:
                self.logger.info(f"task {self.name}: the fire at {_iso(fire)} was caught up elsewhere", task=self.name)
        return claimed

    async def _run_missed(self, fires: list[float]) -> None:
        """Run the missed fires claimed here, one after another."""
        for fire in fires:
            if self._stopping:
                return
            self.logger.info(f"task {self.name}: catching up the fire at {_iso(fire)}", task=self.name)
            self._launch(fire, catch_up=True)
            if self._running is not None:
                await asyncio.wait({self._running})

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop firing; await a running run for a grace period (see `stop_limits`), then cancel it.

        After cancelling, waits only briefly for the run to unwind, so a run that ignores
        cancellation cannot hold up the services stopping after this one.
        """
        self._stopping = True
        self._disarm()
        if self._catching_up is not None:
            self._catching_up.cancel()
            self._catching_up = None
        runs = {run for run in self._runs if not run.done()}
        if not runs:
            return
        grace, unwind = self.stop_limits()
        _, runs = await asyncio.wait(runs, timeout=grace)
        if not runs:
            return
        self.logger.warning(f"task {self.name} still running {grace:g} s after stop, cancelling it", task=self.name)
        for run in runs:
            run.cancel()
        _, runs = await asyncio.wait(runs, timeout=unwind)
        if runs:
            self.logger.error(
                f"task {self.name} did not unwind within {unwind:g} s of being cancelled; left behind", task=self.name
            )

    async def health(self) -> None:
        """Raise when the task is stuck: a run outlived twice its timeout (it ignores being
        cancelled), or a fire is a minute overdue (the timer never fired). The health check of
        `/health/ready`."""
        now, running, last_run = time.time(), self._running, self.last_run
        if (
            running in self._started
            and not running.done()
            and self.timeout
            and last_run is not None
            and now - last_run > 2 * self.timeout
        ):
            raise RuntimeError(f"a run has been going for {now - last_run:.0f} s, timeout {self.timeout:g} s")
        if self._next_at is not None and now - self._next_at > 60:
            raise RuntimeError(f"the fire due at {_iso(self._next_at)} has not happened")

    def metrics(self) -> Iterator[Any]:
        """Runs, failures, skips by policy, timeouts, lateness and last success of this task."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        name = [self.name]
        for metric, doc, value in (
            ("kaiju_task_runs", "Task runs started", self.runs),
            ("kaiju_task_failures", "Task runs that failed (timeouts included)", self.failures),
            ("kaiju_task_timeouts", "Task runs cut by their timeout", self.timeouts),
        ):
            family = CounterMetricFamily(metric, doc, labels=["task"])
            family.add_metric(name, value)
            yield family
        skips = CounterMetricFamily(
            "kaiju_task_skips", "Fires not run (overlap policy, or the loop fell behind)", labels=["task", "policy"]
        )
        skips.add_metric([self.name, self.policy], self.misses)
        yield skips
        yield histogram_family(
            "kaiju_task_lateness_seconds",
            "Seconds between a fire's time and its run starting",
            ["task"],
            [(name, self.lateness)],
        )
        success = GaugeMetricFamily(
            "kaiju_task_last_success_timestamp_seconds", "Unix time of the last run without error", labels=["task"]
        )
        if self.last_success is not None:
            success.add_metric(name, self.last_success)
        yield success

    def stop_limits(self) -> tuple[float, float]:
        """(grace, unwind): seconds `stop()` waits for a running run, then for it to unwind once cancelled.

        The app's `shutdown_timeout` is the budget of the whole stop, every layer included, so
        a task takes at most half of it to let a run finish (less if its own `shutdown_timeout`
        says so) and at most a quarter of it (and never more than a second) to let a cancelled
        run unwind: the services stopping after it (the RPC server, locks, connections) keep
        the rest.
        """
        budget = self.app.shutdown_timeout
        grace = budget * _GRACE_SHARE
        if self.shutdown_timeout is not None:
            grace = min(grace, self.shutdown_timeout)
        return grace, min(_MAX_UNWIND, budget * _UNWIND_SHARE)

    # -- firing -------------------------------------------------------

    def _arm(self, base: float) -> None:
        self._next_base = base
        self._next_at = at = with_jitter(base, self.jitter)
        # wall-clock fire time -> loop clock; recomputed for every fire, so clock drift never adds up
        self._timer = self.loop.call_at(self.loop.time() + (at - time.time()), self._on_timer, base, at)
        self._following = self._next_fire(base)

    def _on_timer(self, fire: float, at: float) -> None:
        now = time.time()
        self._timer = None
        if self._stopping:
            return
        if self.app.managed and not self.app.started.is_set():
            # the services a run calls may still be starting (in this very layer): wait for the app
            self._arming = self.loop.create_task(self._fire_once_started(fire, at), name=f"task:{self.name}:wait")
            return
        if now < at - _EARLY:
            # the wall clock was set back since the timer was armed: wait for the fire time again
            self._timer = self.loop.call_at(self.loop.time() + (at - now), self._on_timer, fire, at)
            return
        if now >= self._following:
            # held up past later fires: run the latest one due. An older fire's singleton lock may
            # have expired already, and another process have run that fire.
            fire, _, skipped = self._latest_due(fire, now)
            self._missed(skipped)
            at = fire
        self.last_fire = fire
        self.last_lateness = now - at
        self.lateness.observe(max(self.last_lateness, 0.0))
        self._fire(fire)
        # the run's first step is queued already: let it go before the next fire is worked out
        self.loop.call_soon(self._rearm, fire, now)

    async def _fire_once_started(self, fire: float, at: float) -> None:
        await self.app.started.wait()
        self._arming = None
        if not self._stopping and self._timer is None:
            self._on_timer(fire, at)

    def _rearm(self, fire: float, now: float) -> None:
        if self._stopping or self._timer is not None:  # stopped, or stopped and started again meanwhile
            return
        _, nxt, skipped = self._latest_due(fire, now)
        self._missed(skipped)
        if nxt <= now:
            nxt = self._next_fire(now)
        self._arm(nxt)

    def _latest_due(self, fire: float, now: float) -> tuple[float, float, int]:
        """From `fire` on: the latest fire not later than `now`, the fire after it, and how
        many fires were passed over to get there."""
        skipped = 0
        nxt = self._next_fire(fire)
        # the loop was held up past whole periods: give those fires up rather than burst
        while nxt <= now and skipped < _MAX_CATCH_UP:
            skipped += 1
            fire, nxt = nxt, self._next_fire(nxt)
        return fire, nxt, skipped

    def _missed(self, skipped: int) -> None:
        if skipped:
            self.misses += skipped
            self.logger.warning(f"task {self.name} fell behind, {skipped} fires skipped", task=self.name)

    def _fire(self, fire: float) -> None:
        running = self._running
        if running is None or running.done():
            self._launch(fire)
        elif self.policy == "skip":
            self.misses += 1
            if self._skip_logged is not running:  # once per overlong run, not at every tick
                self._skip_logged = running
                self.logger.info(f"task {self.name} still running, fire at {_iso(fire)} skipped", task=self.name)
        elif self.policy == "wait":
            if self._pending is not None:
                self.misses += 1  # one run waits; more ticks meanwhile are misses
            self._pending = fire
        else:  # cancel
            running.cancel()
            if running in self._started:
                self.cancelled += 1
                self.logger.info(
                    f"task {self.name} still running, cancelled for the fire at {_iso(fire)}", task=self.name
                )
            else:  # its fire never ran: it was still waiting for an earlier run to unwind
                self.misses += 1
            self._launch(fire)

    def pause(self) -> None:
        """Stop firing (`enabled` turns false); a run going on finishes. `resume()` fires again."""
        self.enabled = False
        self._disarm()

    def _disarm(self) -> None:
        """No fire pending any more: the timer, a fire waiting for the app and a waiting fire go."""
        self._pending = None
        if self._arming is not None:
            self._arming.cancel()
            self._arming = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._next_at = self._next_base = None

    def resume(self) -> None:
        """Fire on the schedule again, from now; raises SettingError when `check()` does."""
        if self.enabled and (self._timer is not None or self._arming is not None):
            return
        self.enabled = True
        self.check()
        if self.app.transports:
            self._arm(self._first_fire(time.time()))

    def reschedule(self) -> None:
        """Arm the schedule again from the wall clock's time now (after the clock was moved: a
        test travelling in time, an operator fixing the clock); a disabled or stopped task is
        left as it is."""
        if not self.enabled or self._stopping or self._timer is None:
            return
        self._timer.cancel()
        self._arm(self._first_fire(time.time()))

    async def fire_now(self) -> None:
        """Run the job once now, outside the schedule (after a run still going has finished),
        and wait for that run to end; its outcome is in `last_result` / `last_error`."""
        self._launch(time.time())
        if self._running is not None:
            await asyncio.wait({self._running})

    def _launch(self, fire: float, catch_up: bool = False) -> None:
        # a run starts only once every earlier one has finished (unwinding after a cancel included)
        previous = {run for run in self._runs if not run.done()}
        task = self.loop.create_task(self._run(fire, previous, catch_up), name=f"task:{self.name}")
        self._running = task
        self._runs.add(task)
        task.add_done_callback(self._on_run_done)

    def _on_run_done(self, task: asyncio.Task) -> None:
        self._runs.discard(task)
        self._started.discard(task)
        if task is not self._running:
            return
        self._running = None
        if self._pending is not None and not self._stopping:
            fire, self._pending = self._pending, None
            self._launch(fire)

    async def _run(self, fire: float, previous: set[asyncio.Task], catch_up: bool = False) -> None:
        if previous:
            await asyncio.wait(previous)  # cancelled runs finish unwinding first
        claim = self._claim if self.singleton and not catch_up else _claimed  # a catch-up claimed its fire already
        execute = functools.partial(self._execute, fire)
        if self._tracing is not None:
            from kaiju.telemetry.tasks import traced_run

            await traced_run(self._tracing, self, fire, claim, execute)
            return
        if await claim(fire) is not None:
            return
        await execute()

    async def _begin(self, run: RunRecord) -> None:
        """Record that `run` began (beside the job, not before it: the record costs the run no
        lateness); a singleton taking over first reads the run before it and claims the fires
        between that nobody ran, run after this one."""
        missed: list[float] = []
        try:
            before = await self.records.last(self.name) if self.singleton and self._handles_misfires else None
            if before is not None and before.fire < run.fire:
                missed = await self._claim_missed(before, run.fire)  # before this run is the latest
            await self.records.begin(self.name, run)
        except Exception as exc:  # a store that fails is logged, never fails the run
            self.logger.warning(f"task {self.name}: run not recorded: {exc!r}", task=self.name)
        if missed:
            self._catching_up = self.loop.create_task(self._run_missed(missed), name=f"task:{self.name}:catch-up")

    async def _finish(self, run: RunRecord, begun: asyncio.Task) -> None:
        """Record how `run` ended, once its beginning is recorded."""
        await asyncio.wait({begun})
        try:
            await self.records.finish(self.name, run)
        except Exception as exc:
            self.logger.warning(f"task {self.name}: run not recorded: {exc!r}", task=self.name)

    async def _execute(self, fire: float) -> str:
        """Run the job once for `fire`, counting and recording it; its outcome: "ok", "failed" or "timeout"."""
        self._started.add(asyncio.current_task())  # type: ignore[arg-type]
        self.runs += 1
        self.last_run = time.time()
        run = RunRecord(fire, self.last_run, process=process_name())
        begun = self.loop.create_task(self._begin(run))
        outcome = "cancelled"
        try:
            outcome = await self._job_outcome()
            return outcome
        finally:
            run = msgspec.structs.replace(run, outcome=outcome, duration=self.last_duration, error=self.last_error)
            await asyncio.shield(self._finish(run, begun))

    async def _job_outcome(self) -> str:
        """Run the job, keeping its result or error: "ok", "failed" or "timeout"."""
        started = time.perf_counter()  # durations on a clock meant for them (the loop's is 1 ms on uvloop)
        correlation_id = new_correlation_id()
        try:
            async with asyncio.timeout(self.timeout) as limit:
                result = await self._job(correlation_id)
        except asyncio.CancelledError:
            self.last_error = "CancelledError: the run was cancelled"
            raise
        except Exception as exc:
            self.failures += 1
            error: BaseException | None = None
            outcome = "failed"
            if limit.expired():
                # the run's own timeout; for a method it may surface as the dispatcher's RequestTimeout
                self.last_error = f"TimeoutError: the run took longer than {self.timeout} s"
                self.timeouts += 1
                outcome = "timeout"
            else:
                # the dispatcher wraps a method's own exception in InternalError: report the original
                error = getattr(exc, "base_exc", None) or exc
                self.last_error = f"{type(error).__name__}: {error}"
            # a method's traceback is the dispatcher's to log (it did, once); a function's is ours
            self.logger.error(
                f"task {self.name} failed: {self.last_error}",
                task=self.name,
                correlation_id=correlation_id,
                exc_info=error if self.method is None else None,
            )
            return outcome
        else:
            self.last_result = _plain(result)
            self.last_error = None
            self.last_success = time.time()
            return "ok"
        finally:
            self.last_duration = time.perf_counter() - started

    async def _claim(self, fire: float) -> str | None:
        """Take this fire's lock until past the next fire; None when taken, else why not:
        "elsewhere" (another process has it), "late" (too late to claim) or "lock failed"."""
        key = f"_tasks.{self.name}.{round(fire * 1000)}"
        nxt = self._next_base if self._next_base is not None and self._next_base > fire else self._next_fire(fire)
        now = time.time()
        if now >= self._next_fire(fire) + self.jitter + _CLAIM_MARGIN:
            # later than any process's lock on this fire lasts: one may have run it, its lock gone
            self.misses += 1
            self.logger.warning(
                f"task {self.name}: the fire at {_iso(fire)} came too late to claim, skipped", task=self.name
            )
            return "late"
        # another process may fire the same time up to `jitter` later, or have its claim still on
        # the way when the next fire comes: it must still find the lock
        ttl = nxt + self.jitter - now + _CLAIM_MARGIN
        if self.locks is None:  # check() requires one for singleton: true
            raise RuntimeError(f"task {self.name}: singleton without a Locks service")
        try:
            await self.locks.acquire(key, ttl, wait=False, renew=False)
        except LockExistsError:
            self.elsewhere += 1
            self.logger.debug(f"task {self.name}: the fire at {_iso(fire)} ran elsewhere", task=self.name)
            return "elsewhere"
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: cannot take the singleton lock: {exc}"
            self.logger.error(f"task {self.name} not run: {self.last_error}", task=self.name)
            return "lock failed"
        return None

    async def _job(self, correlation_id: str) -> Any:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if self.method is not None and self.rpc is not None:  # check() requires an rpc for a method
            headers = {CORRELATION_ID: correlation_id}
            if self.timeout is not None:
                headers[TIMEOUT] = str(self.timeout)
            return await self.rpc.call(self.method, self.params, scope=Scope.SYSTEM, headers=headers, transport="task")
        if isinstance(self.params, dict):
            kwargs = self.params
        elif isinstance(self.params, list):
            args = self.params
        # a function gets the request context a method would: its own correlation id, system scope
        func = self._func or self._resolve_call()  # found by check(), or now (started without one)
        with request_context(scope=Scope.SYSTEM, timeout=self.timeout, correlation_id=correlation_id):
            return await func(*args, **kwargs)

    # -- status -------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is going now (or a cancelled one is still unwinding)."""
        return any(not run.done() for run in self._runs)

    def status(self) -> dict[str, Any]:
        """This task's schedule and counters as plain (JSON-ready) data."""
        return {
            "name": self.name,
            **self.describe(),
            "job": {"method": self.method} if self.method is not None else {"call": self._call_name()},
            "enabled": self.enabled,
            "paused": self.fleet_paused or not self.enabled,
            "policy": str(self.policy),
            "misfire": str(self.misfire),
            "singleton": self.singleton,
            "running": self.running,
            "next_run": _iso(self._next_at),
            "last_run": _iso(self.last_run),
            "last_duration": self.last_duration,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "runs": self.runs,
            "misses": self.misses,
            "failures": self.failures,
            "cancelled": self.cancelled,
            "elsewhere": self.elsewhere,
        }

    def _call_name(self) -> str:
        if isinstance(self.call, str):
            return self.call
        qualname = getattr(self._func, "__qualname__", type(self._func).__qualname__)
        return f"{self._func.__module__}:{qualname}"
