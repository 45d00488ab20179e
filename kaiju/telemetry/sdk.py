"""The OpenTelemetry SDK as the `Telemetry` service sets it up: a tracer provider with its
resource, sampler and exporter.

Imported by `Telemetry.start()` only (and by its `check()`, to tell which package is
missing): an app without the service never loads the SDK. The packages come with the
`otel` extra: ``pip install "kaiju-runner[otel]"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

__all__ = ["DEFAULT_ENDPOINT", "ENDPOINT_VARS", "otlp_endpoint", "otlp_exporter", "tracer_provider"]

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
# the variables an endpoint comes from when the setting gives none, first found wins
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def otlp_endpoint(endpoint: str | None) -> str:
    """The OTLP/HTTP traces URL: `endpoint`, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
    OTEL_EXPORTER_OTLP_ENDPOINT with `/v1/traces` added (as the OpenTelemetry spec says),
    else a collector on this host."""
    if endpoint:
        return endpoint
    traces_var, base_var = ENDPOINT_VARS
    traces = os.environ.get(traces_var)
    if traces:
        return traces
    base = os.environ.get(base_var)
    if base:
        return base.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def tracer_provider(
    resource: Mapping[str, Any],
    sample_ratio: float,
    exporter: SpanExporter,
    *,
    batch: bool = True,
    export_interval: float = 1.0,
    export_timeout: float = 10.0,
    max_queue: int = 2048,
) -> TracerProvider:
    """A tracer provider for `resource` (attributes), sampling root spans at `sample_ratio`
    and following the parent's decision for the others (so a trace is whole or absent),
    exporting through `exporter`: in batches from a thread of the SDK's every
    `export_interval` seconds (`batch`), or at each span's end (tests)."""
    provider = TracerProvider(
        resource=Resource.create(dict(resource)),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        shutdown_on_exit=False,  # the Telemetry service shuts it down, within the shutdown budget
    )
    if batch:
        processor: Any = BatchSpanProcessor(
            exporter,
            max_queue_size=max_queue,
            schedule_delay_millis=export_interval * 1000,
            export_timeout_millis=export_timeout * 1000,
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def otlp_exporter(endpoint: str, timeout: float) -> SpanExporter:
    """The OTLP/HTTP (protobuf) exporter to `endpoint`; headers and TLS from the standard
    OTEL_EXPORTER_OTLP_* variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
