"""The entrypoint: an `aiomisc.Entrypoint` that starts a plan layer by layer.

What it adds to aiomisc's:

- services start in dependency layers (each layer concurrently, through aiomisc's
  `start_services`), each within its start timeout;
- a failed required service rolls back everything already started, in reverse order,
  and raises `StartupError`; a failed optional one is left out with what needs it;
- SIGINT/SIGTERM are handled from the first moment, during start-up too (an interrupted
  start-up rolls back and raises `StartupInterrupted`); a second signal exits at once;
- services stop layer by layer in reverse, within `shutdown_timeout`;
- systemd hears READY=1 only after the last layer started, STOPPING=1 on shutdown, and
  watchdog pings when asked for.
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
from aiomisc.context_vars import set_current_loop
from aiomisc.entrypoint import CURRENT_ENTRYPOINT
from aiomisc.utils import cancel_tasks

from kaiju.config.loader import LoadedConfig, load_config, load_config_data
from kaiju.logging import LOG_FORMATS, configure
from kaiju.runtime.graph import dependents
from kaiju.runtime.plan import Plan, ServiceSpec, build_plan
from kaiju.runtime.registry import Registry
from kaiju.runtime.service import Service
from kaiju.runtime.systemd import SystemdNotifier

__all__ = ["Entrypoint", "StartupError", "StartupInterrupted", "entrypoint", "run"]

log = logging.getLogger("kaiju")

ConfigSource = str | Path | Mapping[str, Any] | LoadedConfig | Sequence[str | Path | Mapping[str, Any]] | None


class StartupError(RuntimeError):
    """A required service failed to start; everything started before it was stopped."""

    def __init__(self, service: str, cause: BaseException | str):
        self.service = service
        self.cause = cause
        reason = cause if isinstance(cause, str) else (f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__)
        super().__init__(f'service "{service}" failed to start: {reason}')


class StartupInterrupted(RuntimeError):
    """A signal arrived during start-up; everything started was stopped again."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"start-up interrupted by {signal.Signals(signum).name}")


def _load(config: ConfigSource, env: Mapping[str, str] | None, env_files: Sequence[str | Path], os_env: bool) -> LoadedConfig:
    if isinstance(config, LoadedConfig):
        return config
    if config is None:
        return load_config_data({"main": {"name": "app"}}, source="<python>", env=env, os_env=os_env)
    if isinstance(config, Mapping):
        return load_config_data(dict(config), source="<python>", env=env, os_env=os_env)
    files = [config] if isinstance(config, str | Path) else list(config)
    return load_config(files, env_files=env_files, env=env, os_env=os_env)


def _default_log_format() -> str:
    fmt = aiomisc_log.LogFormat.default()
    return fmt if fmt in LOG_FORMATS else "color"


class Entrypoint(aiomisc.Entrypoint):
    """An aiomisc entrypoint for the services of a config plus any instances passed in.

    >>> with Entrypoint(config="conf/app.yml") as loop:   # doctest: +SKIP
    ...     loop.run_forever()

    Raises `ConfigError` at construction for a bad config; `StartupError` or
    `StartupInterrupted` from `__enter__` when start-up fails or is interrupted.
    """

    def __init__(
        self,
        *services: Service,
        config: ConfigSource = None,
        env: Mapping[str, str] | None = None,
        env_files: Sequence[str | Path] = (),
        os_env: bool = True,
        registry: Registry | None = None,
        catch_signals: tuple[int, ...] | None = None,
        log_config: bool = True,
        **kwargs: Any,
    ):
        # aiomisc's __del__ reads these; a bad config raises before its __init__ sets them
        self._loop, self._runner, self._loop_owner = None, None, False
        self.config = _load(config, env, env_files, os_env)
        self.plan: Plan = build_plan(self.config, services, registry=registry)
        main = self.config.settings.main
        kwargs.setdefault("log_level", main.loglevel.lower())
        kwargs.setdefault("log_format", _default_log_format())
        kwargs.setdefault("shutdown_timeout", main.shutdown_timeout)
        self.start_timeout = main.start_timeout
        self._log_config = log_config
        if catch_signals is None:
            catch_signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
        self._catch = tuple(catch_signals)
        # aiomisc would install its handlers only after start-up and configure logging itself
        super().__init__(catch_signals=(), log_config=False, **kwargs)
        self.app = self.plan.app
        self.app.shutdown_timeout = self.shutdown_timeout  # a shutdown_timeout argument wins over main's
        self.notifier = SystemdNotifier()
        self.state = "created"  # created -> starting -> running -> stopping -> stopped
        self.started_layers: list[list[Service]] = []
        self.left_out: set[str] = set()
        self.startup_seconds: float | None = None
        self._starting: asyncio.Task | None = None
        self._interrupted: int | None = None
        self._signals_seen = 0

    # -- start --------------------------------------------------------------

    async def _start(self) -> None:
        if self._log_config:
            providers = []
            try:
                from kaiju.rpc.context import log_fields

                providers.append(log_fields)
            except ImportError:  # the RPC package is optional for a bare runtime
                pass
            configure(self.log_level, str(self.log_format), providers)
        CURRENT_ENTRYPOINT.set(self)
        set_current_loop(self.loop)
        for sig in (self.pre_start, self.post_stop, self.pre_stop, self.post_start):
            sig.freeze()
        self._install_signal_handlers()
        self.state = "starting"
        began = time.perf_counter()
        self._starting = self.loop.create_task(self._start_layers())
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
        self.notifier.start_watchdog(self.loop)
        log.info("%s started %d services in %.3f s", self.app.name, sum(map(len, self.started_layers)), self.startup_seconds)

    async def _start_one(self, spec: ServiceSpec) -> None:
        timeout = spec.start_timeout if spec.start_timeout is not None else self.start_timeout
        try:
            await asyncio.wait_for(self.start_services(spec.service), timeout)
        except TimeoutError:
            raise TimeoutError(f"did not start within {timeout:g} s") from None

    async def _start_layers(self) -> None:
        plan = self.plan
        for names in plan.layers:
            names = [n for n in names if n not in self.left_out]
            if not names:
                continue
            layer: list[Service] = []
            self.started_layers.append(layer)
            tasks = {self.loop.create_task(self._start_one(plan.specs[n])): n for n in names}
            pending = set(tasks)
            try:
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        spec = plan.specs[tasks[task]]
                        exc = task.exception()
                        if exc is None:
                            layer.append(spec.service)
                            continue
                        await self._stop_one(spec.service, exc)  # release what a half-done start took
                        if spec.required:
                            raise StartupError(spec.name, exc)
                        self._leave_out(spec, exc)
            except BaseException:
                for task in pending:
                    task.cancel()
                for task in pending:
                    try:
                        await task
                        layer.append(plan.specs[tasks[task]].service)
                    except BaseException:  # noqa: S110 -- it is being rolled back either way
                        await self._stop_one(plan.specs[tasks[task]].service, None)
                raise

    def _leave_out(self, spec: ServiceSpec, exc: BaseException) -> None:
        """An optional service failed: leave it out with everything that needs it."""
        users = dependents(self.plan.graph(), [spec.name])
        needed = sorted(u for u in users if self.plan.specs[u].required)
        if needed:
            raise StartupError(needed[0], f'needs "{spec.name}", which failed to start: {type(exc).__name__}: {exc}')
        self.left_out |= {spec.name, *users}
        for name in (spec.name, *users):
            self.app.services.pop(name, None)
            for service in self.app.services.values():
                # services indexing others (RPCServer's methods) forget the ones left out
                forget = getattr(service, "remove_service", None)
                if callable(forget):
                    forget(name)
        also = f"; left out with it: {', '.join(sorted(users))}" if users else ""
        log.warning('optional service "%s" failed to start (%s: %s)%s', spec.name, type(exc).__name__, exc, also)

    # -- stop ---------------------------------------------------------------

    async def _stop_one(self, service: Service, exc: BaseException | None) -> None:
        try:
            await service.stop(exc if isinstance(exc, Exception) else None)
        except Exception as error:  # one failing stop must not keep the others running
            log.error('service "%s" failed to stop: %s: %s', service.name, type(error).__name__, error)
        finally:
            self._services.discard(service)

    async def _stop_layers(self, exc: BaseException | None) -> None:
        while self.started_layers:
            layer = self.started_layers.pop()
            if not layer:
                continue
            await self.pre_stop.call(entrypoint=self, services=tuple(layer))
            await asyncio.gather(*(self._stop_one(s, exc) for s in layer))
            await self.post_stop.call(entrypoint=self, services=tuple(layer))

    async def _rollback(self, exc: BaseException | None) -> None:
        self.state = "stopping"
        try:
            await asyncio.wait_for(self._stop_layers(exc), self.shutdown_timeout)
        except TimeoutError:
            log.error("roll-back did not finish within %g s", self.shutdown_timeout)
        finally:
            self.state = "stopped"
            self._remove_signal_handlers()

    async def graceful_shutdown(self, exception: Exception | None) -> None:
        async with self._shutdown_lock:
            if self._closing.is_set():
                return
            self._closing.set()
        if self.state not in ("stopped",):
            self.state = "stopping"
            self.notifier.stopping()
            log.info("%s stopping", self.app.name)
            await cancel_tasks(set(self._tasks))
            try:
                await asyncio.wait_for(self._stop_layers(exception), self.shutdown_timeout)
            except TimeoutError:
                log.error("shutdown did not finish within %g s; the rest was cancelled", self.shutdown_timeout)
            self.state = "stopped"
        if self._loop_owner:
            await self._cancel_background_tasks()
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

    async def _stop(self, exc: Exception) -> None:
        try:
            await super()._stop(exc)
        finally:
            self._remove_signal_handlers()
            self.notifier.close()

    # -- signals ------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for signum in self._catch:
            self.loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        if self.loop.is_closed():
            return
        for signum in self._catch:
            self.loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
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
        task = self.loop.create_task(self._stop(RuntimeError(f"{name} received")))
        task.add_done_callback(lambda _: self.loop.stop())


entrypoint = Entrypoint


def run(*services: Service, config: ConfigSource = None, **kwargs: Any) -> None:
    """Start the services of `config` (and `services`) and run until SIGINT or SIGTERM.

    Raises ConfigError for a bad config and StartupError when a required service fails.
    """
    try:
        with Entrypoint(*services, config=config, **kwargs) as loop:
            loop.run_forever()
    except StartupInterrupted:  # a signal during start-up is a stop like any other
        pass
