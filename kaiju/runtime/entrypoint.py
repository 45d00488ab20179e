"""The entrypoint: starts a plan layer by layer around an `aiomisc.Entrypoint`.

aiomisc's entrypoint (marked final) is used whole, through its public API: it owns the
event loop, its thread pool and its `Context`, and starts and stops each service
(`start_services` / `stop_services`, so a service gets its loop, `start_event` and
context exactly as under aiomisc). What this one adds:

- services start in dependency layers (each layer concurrently), each within its start
  timeout;
- a failed required service rolls back everything already started, in reverse order,
  and raises `StartupError`; a failed optional one is left out with what needs it;
- SIGINT/SIGTERM are handled from the first moment, during start-up too (an interrupted
  start-up rolls back and raises `StartupInterrupted`); a second signal exits at once;
- services stop layer by layer in reverse, within one budget, `shutdown_timeout`, of which
  each layer gets what is left (at least `STOP_MINIMUM`): every started service's stop runs;
- aiomisc's entrypoint signals (`pre_start`, `post_start`, `pre_stop`, `post_stop`)
  fire once for the whole app, not once per layer;
- systemd hears READY=1 only after the last layer started, STOPPING=1 on shutdown, and
  watchdog pings when asked for;
- log records carry the fields that started services provide (`log_fields()`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomisc
import aiomisc_log

from kaiju.config.loader import LoadedConfig, load_config, load_config_data
from kaiju.config.sources import CONFIG_ENV, ENV_FILE_ENV, paths_from_env
from kaiju.logging import LOG_FORMATS, ContextFilter, check_logging, configure, log_field_providers
from kaiju.runtime.graph import dependents
from kaiju.runtime.loop import config_loop, entrypoint_loop_kwargs, loop_name
from kaiju.runtime.plan import Plan, build_plan
from kaiju.runtime.registry import Registry
from kaiju.runtime.service import Service
from kaiju.runtime.systemd import SystemdNotifier

__all__ = ["Entrypoint", "StartupError", "StartupInterrupted", "entrypoint", "run"]

log = logging.getLogger("kaiju")

# Seconds a layer's stop may take even when the shutdown budget is spent, and that a stop
# cancelled at the end of its time gets to unwind.
STOP_MINIMUM = 1.0

ConfigSource = str | Path | Mapping[str, Any] | LoadedConfig | Sequence[str | Path | Mapping[str, Any]] | None


class StartupError(RuntimeError):
    """A required service failed to start; everything started before it was stopped."""

    def __init__(self, service: str, cause: BaseException | str):
        self.service = service
        self.cause = cause
        reason = (
            cause
            if isinstance(cause, str)
            else (f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__)
        )
        super().__init__(f'service "{service}" failed to start: {reason}')


class StartupInterrupted(RuntimeError):
    """A signal arrived during start-up; everything started was stopped again."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"start-up interrupted by {signal.Signals(signum).name}")


def _load(
    config: ConfigSource, env: Mapping[str, str] | None, env_files: Sequence[str | Path], os_env: bool
) -> LoadedConfig:
    if isinstance(config, LoadedConfig):
        return config
    env_files = list(env_files) or paths_from_env(ENV_FILE_ENV)
    if config is None:
        files = paths_from_env(CONFIG_ENV)  # as kaiju-run reads them without -c
        if files:
            return load_config(files, env_files=env_files, env=env, os_env=os_env)
        return load_config_data({"main": {"name": "app"}}, source="<python>", env=env, os_env=os_env)
    if isinstance(config, Mapping):
        return load_config_data(dict(config), source="<python>", env=env, os_env=os_env)
    sources: list[str | Path | Mapping[str, Any]] = [config] if isinstance(config, str | Path) else list(config)
    return load_config(sources, env_files=env_files, env=env, os_env=os_env)


def _default_log_format() -> str:
    fmt = aiomisc_log.LogFormat.default()
    return fmt if fmt in LOG_FORMATS else "color"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Entrypoint:
    """Runs the services of a config plus any instances passed in, like an aiomisc entrypoint.

    >>> with Entrypoint(config="conf/app.yml") as loop:   # doctest: +SKIP
    ...     loop.run_forever()

    Also `async with Entrypoint(...)` inside a running loop. Keyword arguments other than
    kaiju's go to `aiomisc.Entrypoint` (`pool_size`, `debug`, ...). Raises `ConfigError` at
    construction for a bad config; `StartupError` or `StartupInterrupted` on entering when
    start-up fails or is interrupted.
    """

    def __init__(
        self,
        *services: aiomisc.Service,
        config: ConfigSource = None,
        env: Mapping[str, str] | None = None,
        env_files: Sequence[str | Path] = (),
        os_env: bool = True,
        registry: Registry | None = None,
        catch_signals: tuple[int, ...] | None = None,
        log_config: bool = True,
        log_level: str | int | None = None,
        log_format: str | None = None,
        shutdown_timeout: float | None = None,
        **kwargs: Any,
    ):
        self.config = _load(config, env, env_files, os_env)
        self.plan: Plan = build_plan(self.config, services, registry=registry)
        main = self.config.settings.main
        self.log_level = log_level if log_level is not None else main.loglevel.lower()
        self.log_format = log_format or self.config.settings.logging.format or _default_log_format()
        self.log_config = log_config
        if log_config:
            check_logging(self.config, log_format)
        self.shutdown_timeout = float(shutdown_timeout if shutdown_timeout is not None else main.shutdown_timeout)
        self.start_timeout = main.start_timeout
        if catch_signals is None:
            catch_signals = (
                (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
            )
        self.catch_signals = tuple(catch_signals)
        if not {"loop", "loop_factory", "policy"} & kwargs.keys():
            kwargs.update(entrypoint_loop_kwargs(config_loop(self.config)))
        # aiomisc's entrypoint owns the loop, its executor and Context; its own signal
        # handling (installed only after start-up) and logging set-up stay off
        self.aiomisc = aiomisc.Entrypoint(
            catch_signals=(), log_config=False, shutdown_timeout=self.shutdown_timeout, **kwargs
        )
        # aiomisc fires these once per start_services call; here they fire once per app,
        # so the receivers move to this entrypoint and aiomisc's keeps empty signals
        self.pre_start, self.aiomisc.pre_start = self.aiomisc.pre_start, aiomisc.Signal()
        self.post_start, self.aiomisc.post_start = self.aiomisc.post_start, aiomisc.Signal()
        self.pre_stop, self.aiomisc.pre_stop = self.aiomisc.pre_stop, aiomisc.Signal()
        self.post_stop, self.aiomisc.post_stop = self.aiomisc.post_stop, aiomisc.Signal()
        self.app = self.plan.app
        self.app.shutdown_timeout = self.shutdown_timeout  # a shutdown_timeout argument wins over main's
        self.notifier = SystemdNotifier()
        self.state = "created"  # created -> starting -> running -> stopping -> stopped
        self.started_layers: list[list[str]] = []
        self.left_out: set[str] = set()
        self._timed_out: set[str] = set()
        self.startup_seconds: float | None = None
        self.log_filter: ContextFilter | None = None
        self._starting: asyncio.Task | None = None
        self._stopping: asyncio.Future | None = None
        self._interrupted: int | None = None
        self._signals_seen = 0
        self._handlers_on: asyncio.AbstractEventLoop | None = None
        self._missed_signals: list[int] = []  # arrived while a uvloop loop was not running
        self._replayed: list[int] = []  # handled by _replay_missed_signals, maybe still in uvloop's pipe
        self._sync = False  # entered with `with`, not `async with`

    # -- what aiomisc users read ----------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop (aiomisc's entrypoint makes one when none is running)."""
        return self.aiomisc.loop

    @property
    def services(self) -> tuple[aiomisc.Service, ...]:
        """The services started and not yet stopped."""
        return tuple(self.plan.specs[name].service for layer in self.started_layers for name in layer)

    # -- context managers -------------------------------------------------------

    def __enter__(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        self._sync = True
        try:
            loop.run_until_complete(self.__aenter__())
        except BaseException as exc:
            self.aiomisc.__exit__(type(exc), exc, exc.__traceback__)  # also closes the loop it made
            raise
        # the caller's next run replays a missed signal after its first poll: one that came at the
        # end of start-up may still sit in uvloop's wakeup pipe, and is handed over there (heard once)
        loop.call_soon(loop.call_soon, self._replay_missed_signals)
        return loop

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        try:
            loop.run_until_complete(self._stop_app(exc))
        finally:
            self.aiomisc.__exit__(exc_type, exc, tb)
            self._close()

    async def __aenter__(self) -> Entrypoint:
        loop = asyncio.get_running_loop()
        if self.log_config:
            self.log_filter = configure(self.log_level, str(self.log_format), settings=self.config.settings.logging)
        self._install_signal_handlers(loop)
        self.state = "starting"
        began = time.perf_counter()
        self._starting = loop.create_task(self._start_app())
        try:
            await self._starting
        except asyncio.CancelledError:
            if self._interrupted is None:  # we were cancelled from outside: so is the start-up
                self._starting.cancel()
                await asyncio.gather(self._starting, return_exceptions=True)
                await self._rollback(None)
                raise
            log.warning("start-up interrupted by %s, stopping what has started", signal.Signals(self._interrupted).name)
            await self._rollback(None)
            raise StartupInterrupted(self._interrupted) from None
        except BaseException as exc:  # the caller reports it (kaiju-run prints one line)
            await self._rollback(exc)
            raise
        self.startup_seconds = time.perf_counter() - began
        self.state = "running"
        self.app.started.set()
        self.notifier.ready()
        self.notifier.start_watchdog(loop)
        log.info(
            "%s started %d services in %.3f s on %s",
            self.app.name,
            len(self.services),
            self.startup_seconds,
            loop_name(loop),
        )
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            await self._stop_app(exc)
        finally:
            await self.aiomisc.__aexit__(exc_type, exc, tb)
            self._close()

    # -- start --------------------------------------------------------------

    async def _start_app(self) -> None:
        await self.aiomisc.__aenter__()  # the Context, the current entrypoint and loop
        for sig in (self.pre_start, self.post_start, self.pre_stop, self.post_stop):
            sig.freeze()
        await self.pre_start.call(entrypoint=self, services=tuple(s.service for s in self.plan.specs.values()))
        await self._start_layers()
        await self.post_start.call(entrypoint=self, services=self.services)

    async def _start_one(self, name: str) -> None:
        spec = self.plan.specs[name]
        timeout = spec.start_timeout if spec.start_timeout is not None else self.start_timeout
        try:
            await asyncio.wait_for(self.aiomisc.start_services(spec.service), timeout)
        except TimeoutError:
            self._timed_out.add(name)  # a timeout has no traceback worth showing
            raise TimeoutError(f"did not start within {timeout:g} s") from None

    async def _start_layers(self) -> None:
        plan = self.plan
        for names in plan.layers:
            names = [n for n in names if n not in self.left_out]
            if not names:
                continue
            layer: list[str] = []
            self.started_layers.append(layer)
            tasks = {asyncio.ensure_future(self._start_one(n)): n for n in names}
            pending = set(tasks)
            try:
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        name = tasks[task]
                        exc = task.exception()
                        if exc is None:
                            layer.append(name)
                            continue
                        await self._stop_one(name, exc)  # release what a half-done start took
                        if plan.specs[name].required:
                            self._explain(name, exc)
                            raise StartupError(name, exc)
                        self._leave_out(name, exc)
            except BaseException:
                for task in pending:
                    task.cancel()
                for task in pending:
                    # started or not, it is stopped by the roll-back, in order and within the
                    # shutdown budget (a stop here would have no bound)
                    await asyncio.gather(task, return_exceptions=True)
                    layer.append(tasks[task])
                raise
            self._collect_log_fields(layer)

    def _explain(self, name: str, exc: BaseException) -> None:
        """Log why a service failed to start: its traceback at DEBUG, else how to see it."""
        if name in self._timed_out:
            return  # the one-line summary says it all
        if log.isEnabledFor(logging.DEBUG):
            log.error('service "%s" failed to start', name, exc_info=exc)
        else:
            log.error('service "%s" failed to start; rerun with --log-level DEBUG to see the traceback', name)

    def _leave_out(self, name: str, exc: BaseException) -> None:
        """An optional service failed: leave it out with everything that cannot go without it;
        a service that declared it an optional dependency (`x: X | None`) starts with None."""
        users = dependents(self.plan.graph(hard=True), [name])
        needed = sorted(u for u in users if self.plan.specs[u].required)
        if needed:
            raise StartupError(needed[0], f'needs "{name}", which failed to start: {_reason(exc)}')
        self.left_out |= {name, *users}
        for gone in (name, *users):
            self.app.services.pop(gone, None)
            for service in self.app.services.values():
                if isinstance(service, Service):  # services indexing others (RPCServer's methods)
                    service.forget_service(gone)
        for other, spec in self.plan.specs.items():
            if other in self.left_out:
                continue
            for attr in [a for a, target in spec.needs.items() if target in self.left_out and a in spec.optional]:
                setattr(spec.service, attr, None)
                del spec.needs[attr]
        also = f"; left out with it: {', '.join(sorted(users))}" if users else ""
        log.warning('optional service "%s" failed to start (%s)%s', name, _reason(exc), also)
        if name not in self._timed_out:
            log.debug('optional service "%s" failed to start', name, exc_info=exc)

    def _collect_log_fields(self, layer: list[str]) -> None:
        if self.log_filter is None:
            return
        services = (self.plan.specs[name].service for name in layer)
        for provider in log_field_providers(s.log_fields() for s in services if isinstance(s, Service)):
            if provider not in self.log_filter.providers:
                self.log_filter.providers.append(provider)

    # -- stop ---------------------------------------------------------------

    async def _stop_one(self, name: str, exc: BaseException | None) -> None:
        service = self.plan.specs[name].service
        try:
            await self.aiomisc.stop_services(service, exc=exc if isinstance(exc, Exception) else None)
        except Exception as error:  # one failing stop must not keep the others running
            log.error('service "%s" failed to stop: %s', name, _reason(error))

    async def _stop_layers(self, exc: BaseException | None, what: str) -> None:
        """Stop the started layers in reverse within one budget, `shutdown_timeout`: each layer
        gets what is left of it, but at least `STOP_MINIMUM`, so every started service's
        `stop()` runs even after an upper layer used the whole budget (a service that flushes
        data on stop still gets to). A layer still stopping when its time is up is cancelled
        (given `STOP_MINIMUM` more to unwind, then left behind) and the next one starts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        late: list[str] = []
        while self.started_layers:
            layer = self.started_layers.pop()
            if not layer:
                continue
            tasks = {asyncio.ensure_future(self._stop_one(name, exc)): name for name in layer}
            _, pending = await asyncio.wait(tasks, timeout=max(deadline - loop.time(), STOP_MINIMUM))
            if pending:
                late += sorted(tasks[t] for t in pending)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=STOP_MINIMUM)
        if late:
            log.error(
                "%s did not finish within %g s; cancelled the stop of: %s", what, self.shutdown_timeout, ", ".join(late)
            )

    async def _stop_all(self, exc: BaseException | None, what: str) -> None:
        self.app.stopping = True
        await self.pre_stop.call(entrypoint=self, services=self.services)
        await self._stop_layers(exc, what)
        self.state = "stopped"
        await self.post_stop.call(entrypoint=self, services=())

    async def _rollback(self, exc: BaseException | None) -> None:
        self.state = "stopping"
        try:
            await self._stop_all(exc, "roll-back")
        finally:
            self.state = "stopped"
            try:
                if not self._sync:  # else __enter__ leaves aiomisc's entrypoint with its __exit__
                    await self.aiomisc.__aexit__(None, None, None)
            finally:
                self._close()

    async def _stop_app(self, exc: BaseException | None) -> None:
        """Stop every started service in reverse layers, once however often it is asked."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._graceful_stop(exc if isinstance(exc, Exception) else None))
        await asyncio.shield(self._stopping)

    async def _graceful_stop(self, exc: Exception | None) -> None:
        if self.state == "stopped":
            return
        self.state = "stopping"
        self.notifier.stopping()
        log.info("%s stopping", self.app.name)
        await self._stop_all(exc, "shutdown")

    def _close(self) -> None:
        self._remove_signal_handlers()
        self.notifier.close()

    # -- signals ------------------------------------------------------------

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in self.catch_signals:
            loop.add_signal_handler(signum, self._on_signal, signum)
            if loop_name(loop) == "uvloop":  # see _replay_missed_signals
                signal.signal(signum, self._noting_missed(loop, signal.getsignal(signum)))
        self._handlers_on = loop

    def _noting_missed(self, loop: asyncio.AbstractEventLoop, handler: Any) -> Any:
        """`handler` (the loop's own Python-level one), noting first each signal until the loop
        hands it to `_on_signal`."""

        def note(signum: int, frame: Any) -> None:
            self._missed_signals.append(signum)  # until _on_signal hears it
            handler(signum, frame)

        return note

    def _replay_missed_signals(self) -> None:
        """uvloop listens for signals only while its loop runs: a SIGTERM arriving at the end of
        start-up or between `with Entrypoint() as loop:` and `loop.run_forever()` would wait
        for another signal. One noted but not handled is handled now, early in the next run
        (after its first poll, which hands over any signal the loop did catch)."""
        missed, self._missed_signals = self._missed_signals, []
        for signum in missed:
            self._on_signal(signum)
            # uvloop may yet hand the same delivery over (its wakeup pipe is read in a poll that
            # can come after this callback on a busy machine): that one is heard once, here
            self._replayed.append(signum)

    def _remove_signal_handlers(self) -> None:
        loop, self._handlers_on = self._handlers_on, None
        if loop is None or loop.is_closed():
            return
        for signum in self.catch_signals:
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if signum in self._missed_signals:
            self._missed_signals.remove(signum)
        elif signum in self._replayed:  # the delivery replayed already, handed over late
            self._replayed.remove(signum)
            return
        name = signal.Signals(signum).name
        if self.state in ("stopping", "stopped") and not self._signals_seen:
            log.warning("%s received while already stopping", name)
            return
        self._signals_seen += 1
        if self._signals_seen > 1:
            log.error("%s again: exiting now", name)
            logging.shutdown()
            os._exit(128 + signum)
        if self.state == "starting" and self._starting is not None:
            self._interrupted = signum
            self._starting.cancel()
            return
        log.warning("%s received, shutting down", name)
        loop = self.loop
        task = loop.create_task(self._stop_app(RuntimeError(f"{name} received")))
        task.add_done_callback(lambda _: loop.stop())


entrypoint = Entrypoint


def run(*services: aiomisc.Service, config: ConfigSource = None, **kwargs: Any) -> None:
    """Start the services of `config` (and `services`) and run until SIGINT or SIGTERM.

    Raises ConfigError for a bad config and StartupError when a required service fails.
    """
    try:
        with Entrypoint(*services, config=config, **kwargs) as loop:
            loop.run_forever()
    except StartupInterrupted:  # a signal during start-up is a stop like any other
        pass
