"""Health of an app: is it live, is it ready, and which service is failing and why.

A service takes part by implementing the `health()` hook of the service contract
(`kaiju.Service.health`): `async def health(self) -> None` that raises when the service
cannot do its work (the message says why). `HealthCheck` runs every service's
check concurrently, each within a timeout, and keeps the report for a short while so a
storm of probes costs one round of checks. `AppHealth` (service name "app") serves the
report as the RPC method `app.health`; `HTTPServer` serves it at `/health/ready`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from kaiju.masking import mask_text
from kaiju.rpc.access import Scope
from kaiju.rpc.context import current
from kaiju.rpc.methods import method
from kaiju.runtime.service import App, Service
from kaiju.runtime.types import NonNegative, Positive

__all__ = ["AppHealth", "HealthCheck", "HealthReport"]


class HealthReport(msgspec.Struct):
    """One round of checks.

    `state` is "starting" (not every layer has started), "running" or "stopping";
    `ready` is true when running and no check failed; `failing` maps each failing service
    to why.
    """

    ready: bool
    state: str
    failing: dict[str, str] = {}

    def public(self) -> dict[str, Any]:
        """The report as a guest may see it: the names of the failing services, not why."""
        return {"ready": self.ready, "state": self.state, "failing": sorted(self.failing)}

    def details(self) -> dict[str, Any]:
        """The whole report as a dict."""
        return msgspec.to_builtins(self)


class HealthCheck:
    """Runs the `health()` of each service of `app` within `timeout` seconds and keeps the
    report for `cache_seconds`; callers arriving during a round wait for that round."""

    def __init__(self, app: App, timeout: float = 1.0, cache_seconds: float = 1.0):
        self.app = app
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._report: HealthReport | None = None
        self._checked_at = 0.0
        self._round: asyncio.Future[HealthReport] | None = None

    def state(self) -> str:
        """ "stopping", "starting" or "running", from the app's flags."""
        if self.app.stopping:
            return "stopping"
        if self.app.managed and not self.app.started.is_set():
            return "starting"
        return "running"

    async def report(self) -> HealthReport:
        """The current report; runs the checks when the kept one is older than `cache_seconds`."""
        state = self.state()
        if state != "running":  # nothing to check: not ready whatever the services say
            return HealthReport(False, state)
        if self._report is not None and time.monotonic() - self._checked_at < self.cache_seconds:
            return self._report
        if self._round is None:
            self._round = asyncio.ensure_future(self._run())
            self._round.add_done_callback(self._keep)
        return await asyncio.shield(self._round)

    def _keep(self, done: asyncio.Future[HealthReport]) -> None:
        self._round = None
        if not done.cancelled() and done.exception() is None:
            self._report, self._checked_at = done.result(), time.monotonic()

    async def _run(self) -> HealthReport:
        checked = [
            (name, svc.health)
            for name, svc in list(self.app.services.items())
            if isinstance(svc, Service) and type(svc).health is not Service.health  # the default checks nothing
        ]
        reasons = await asyncio.gather(*(self._check(check) for _, check in checked))
        failing = {name: why for (name, _), why in zip(checked, reasons, strict=True) if why is not None}
        return HealthReport(not failing and self.state() == "running", self.state(), failing)

    async def _check(self, check: Any) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # any failure is the answer: the service is not healthy
            # the readiness probe answers anyone: credentials in the message are masked
            return f"{type(exc).__name__}: {mask_text(str(exc))}" if str(exc) else type(exc).__name__
        return None


class AppHealth(Service):
    """The app's health as the RPC method `app.health` (service name "app").

    An `HTTPServer` registers one on its `RPCServer` by itself when the app has no service
    named "app"; configure it to change its settings, or to have `app.health` without an
    HTTPServer:

    - timeout (float s, 1.0): how long each service's check may take;
    - cache_seconds (float s, 1.0): how long a report is reused.
    """

    service_name = "app"

    timeout: Positive = 1.0
    """Seconds each service's check may take."""
    cache_seconds: NonNegative = 1.0
    """Seconds a report is reused."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.checks = HealthCheck(self.app, self.timeout, self.cache_seconds)

    def bind(self, app: App, loglevel: str | int | None = None) -> None:
        """Attach to `app` (and check its services)."""
        super().bind(app, loglevel)
        self.checks.app = app

    async def start(self) -> None:
        """Nothing to open: the checks run when asked."""

    @method(name="health", permission=Scope.GUEST)
    async def report(self) -> dict[str, Any]:  # not `health`: this service has nothing of its own to check
        """Whether the app is ready, and the services failing their health check (a caller
        with the system scope also sees why)."""
        report = await self.checks.report()
        ctx = current()
        return report.details() if ctx is not None and ctx.scope <= Scope.SYSTEM else report.public()
