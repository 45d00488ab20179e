"""`Telemetry`: OpenTelemetry tracing for the app, one trace per request across processes.

    services:
      - cls: Telemetry
        settings:
          endpoint: "[OTEL_ENDPOINT:http://collector:4318/v1/traces]"
          sample_ratio: 0.1

At start it sets up the OpenTelemetry SDK (from the `otel` extra): a tracer provider for
the app's resource (`service.name`, `service.version`, `deployment.environment`), a
parent-based ratio sampler and a batch exporter over OTLP/HTTP; at stop it exports what
is left within the shutdown budget. Every service that traces (HTTP server and client,
RPC server, stream producer and listener, tasks; with `detail: full` caches, locks and
Redis) depends on it optionally, so it starts before them and stops after them, and gets
its tracer from it (`kaiju.telemetry.provider.tracing_of`).

This module imports nothing of OpenTelemetry: naming the class (every tracing service's
annotation does) costs nothing.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from msgspec import Meta

from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import Positive, PositiveInt

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.memory import SpanRecorder
    from kaiju.telemetry.tracing import Tracing

__all__ = ["OTEL_EXTRA", "Telemetry"]

OTEL_EXTRA = 'pip install "kaiju-runner[otel]"'
SampleRatio = Annotated[float, Meta(ge=0.0, le=1.0)]
ResourceValue = str | bool | int | float


class Telemetry(Service):
    """Traces of the app's requests, messages and task runs, exported over OTLP (service
    name "telemetry").

    `check()` (so `kaiju-run check`) says which package to install when the SDK or the
    exporter is missing. With `exporter: memory` the spans stay in the process, for
    tests (`spans()`); with `exporter: none` no SDK is set up here, and kaiju's spans go to
    the tracer provider the app set itself through the OpenTelemetry API.
    """

    # `service_name` is this service's setting (the OpenTelemetry name for it), not the
    # runtime's default instance name: `default_name()` says that one
    _base_attrs = Service._base_attrs - {"service_name"}

    endpoint: str | None = None
    """Where spans go, OTLP over HTTP (`http://collector:4318/v1/traces`). Null:
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT with `/v1/traces`,
    else http://localhost:4318/v1/traces."""
    service_name: str | None = None  # type: ignore[misc]  # a setting here: see _base_attrs
    """The spans' `service.name` (null: OTEL_SERVICE_NAME, else `main.name`)."""
    sample_ratio: SampleRatio = 1.0
    """Share of traces kept, decided where a trace begins (a request without a `traceparent`,
    a task's run); the rest of a trace follows that decision, so a trace is whole or absent."""
    resource: dict[str, ResourceValue] = {}  # noqa: RUF012 -- a setting's default, never mutated
    """More resource attributes (`host.name`, `k8s.pod.name`, ...); `service.version` and
    `deployment.environment` come from `main`."""
    detail: Literal["basic", "full"] = "basic"
    """"full": the calls of caches, locks and Redis get spans of their own too."""
    exporter: Literal["otlp", "memory", "none"] = "otlp"
    """"otlp": batches over HTTP to `endpoint`; "memory": kept in the process (tests read
    them with `spans()`); "none": no SDK set up here, kaiju's spans go to the tracer
    provider the app set itself through the OpenTelemetry API (another vendor's)."""
    export_interval: Positive = 1.0
    """Seconds between two batch exports."""
    export_timeout: Positive = 10.0
    """Seconds one export may take."""
    max_queue: PositiveInt = 2048
    """Spans waiting for export at most; past it new ones are dropped, never held in memory."""
    flush_timeout: Positive = 5.0
    """Seconds stop() waits for the last spans to go out (at most a quarter of
    `main.shutdown_timeout`); what is left then is dropped."""
    global_provider: bool = True
    """Also make this the process's tracer provider (when it has none yet), so the spans the
    app's own code makes through `opentelemetry.trace.get_tracer()` join kaiju's traces. A
    process keeps the first for its life: leave it off for several apps in one process."""

    @classmethod
    def default_name(cls) -> str:
        return "telemetry"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.running: Running | None = None  # from start() to stop()
        # with exporter "memory": the spans, kept after stop() (a test reads them then) until a new start
        self._recorder: SpanRecorder | None = None

    # -- lifetime ---------------------------------------------------------------------

    def check(self) -> None:
        """The SDK and the exporter are installed (ValueError naming the extra to install);
        `endpoint` (or the OTEL_EXPORTER_OTLP_* variable it comes from) is an http(s) URL
        (SettingError)."""
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise SettingError("endpoint", f"expected an http:// or https:// URL, got {self.endpoint!r}")
        wanted = {"otlp": ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")}.get(
            self.exporter, ("opentelemetry.sdk.trace",) if self.exporter == "memory" else ()
        )
        for module in wanted:
            try:
                __import__(module)
            except ImportError as exc:
                raise ValueError(
                    f'exporter "{self.exporter}" needs the OpenTelemetry SDK and exporter, and {exc.name or module} '
                    f"does not import: {OTEL_EXTRA}"
                ) from None
        if self.exporter == "otlp" and self.endpoint is None:
            self._check_endpoint_variable()

    @staticmethod
    def _check_endpoint_variable() -> None:
        """The environment's endpoint, when it gives the one used, is an http(s) URL: else every
        export fails at run time, logged by the exporter only."""
        from kaiju.telemetry.sdk import ENDPOINT_VARS  # the SDK imports: check() asked first

        for name in ENDPOINT_VARS:
            value = os.environ.get(name)
            if value:
                if not value.startswith(("http://", "https://")):
                    raise SettingError("endpoint", f"expected an http:// or https:// URL, got {value!r} (from {name})")
                return

    async def start(self) -> None:
        """Set up the tracer provider; raises ValueError when `check()` does."""
        self.check()
        from kaiju import __version__
        from kaiju.telemetry.tracing import Tracing

        full = self.detail == "full"
        if self.exporter == "none":
            from opentelemetry import trace

            # the process's provider, or the API's proxy: spans reach one the app sets later too
            self.running = Running(Tracing(trace.get_tracer("kaiju", __version__), full), None)
            return
        provider, self._recorder = self._provider()
        # its sampler is parent-based (kaiju.telemetry.sdk): nothing is made below a span sampled out
        tracer = provider.get_tracer("kaiju", __version__)
        self.running = Running(Tracing(tracer, full, follows_parent=True), provider)
        if self.global_provider:
            self._make_global(provider)
        self.logger.info("tracing", exporter=self.exporter, endpoint=self._endpoint(), sample_ratio=self.sample_ratio)

    async def stop(self, exception: Exception | None = None) -> None:
        """Export what is left (within `flush_timeout`, at most a quarter of the shutdown
        budget), then shut the provider down."""
        running, self.running = self.running, None
        if running is None or running.provider is None:
            return
        budget = self.app.shutdown_timeout
        wait = min(self.flush_timeout, budget / 4) if budget else self.flush_timeout
        loop = asyncio.get_running_loop()
        provider = running.provider
        try:
            async with asyncio.timeout(wait):
                flushed = await loop.run_in_executor(None, provider.force_flush, int(wait * 1000))
                await loop.run_in_executor(None, provider.shutdown)
        except TimeoutError:
            flushed = False
        if not flushed:
            self.logger.warning("spans not exported by stop: dropped", endpoint=self._endpoint(), within=wait)

    def log_fields(self) -> Any:
        """A provider of the current span's `trace_id` and `span_id`, for log records."""
        from kaiju.telemetry.tracing import log_fields

        return log_fields

    # -- what the app reaches ---------------------------------------------------------

    @property
    def tracing(self) -> Tracing | None:
        """kaiju's tracer and its helpers while started, else None."""
        return self.running.tracing if self.running is not None else None

    def spans(self, name: str | None = None) -> list[Any]:
        """The spans ended so far (called `name`, when given), with `exporter: memory`;
        RuntimeError otherwise."""
        return self.recorder.spans(name)

    @property
    def recorder(self) -> SpanRecorder:
        """Where `exporter: memory` keeps the spans (from start on, and after stop);
        RuntimeError for another exporter or before start."""
        if self._recorder is None:
            raise RuntimeError(f'{self.name}: spans are kept with exporter "memory" only, once started')
        return self._recorder

    # -- helpers ----------------------------------------------------------------------

    def _provider(self) -> tuple[Any, SpanRecorder | None]:
        from kaiju.telemetry import sdk

        recorder = None
        if self.exporter == "memory":
            from kaiju.telemetry.memory import SpanRecorder

            recorder = SpanRecorder()
            exporter: Any = recorder
        else:
            exporter = sdk.otlp_exporter(sdk.otlp_endpoint(self.endpoint), self.export_timeout)
        provider = sdk.tracer_provider(
            self._resource(),
            self.sample_ratio,
            exporter,
            batch=recorder is None,  # kept in memory: at each span's end, so a test sees it at once
            export_interval=self.export_interval,
            export_timeout=self.export_timeout,
            max_queue=self.max_queue,
        )
        return provider, recorder

    def _resource(self) -> dict[str, ResourceValue]:
        import os

        env = self.app.env
        return {
            "service.name": self.service_name or os.environ.get("OTEL_SERVICE_NAME") or self.app.name,
            "service.version": self.app.version,
            "deployment.environment": env,
            "deployment.environment.name": env,  # the newer conventions' name for the same
            **self.resource,
        }

    def _endpoint(self) -> str | None:
        if self.exporter != "otlp":
            return None
        from kaiju.telemetry.sdk import otlp_endpoint

        return otlp_endpoint(self.endpoint)

    def _make_global(self, provider: Any) -> None:
        from opentelemetry import trace

        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:  # the API keeps the first one set for the life of the process
            self.logger.info("the process has a tracer provider already: spans made through the API go there")


class Running(NamedTuple):
    """What a started Telemetry holds: kaiju's tracing and the SDK's provider (None: the process's own)."""

    tracing: Tracing
    provider: Any
