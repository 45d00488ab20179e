"""Where kaiju's spans go: the `Telemetry` service's tracer, the process's own, or nowhere.

A service that traces asks at its start (`tracing_of(self.telemetry)`): with a `Telemetry`
service in the app, its `Tracing`; without one, a `Tracing` over the tracer provider the
process set through the OpenTelemetry API before the app started (another vendor's SDK,
an auto-instrumentation); when the process set none, None: the service makes no span at
all, so an app without tracing pays a test of one attribute per request, not even the
API's no-op tracer.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["process_tracing", "tracing_of"]

_TRACER = "kaiju"


def tracing_of(telemetry: Any) -> Tracing | None:
    """The tracing of a service whose `Telemetry` dependency is `telemetry` (None: the app has none)."""
    if telemetry is not None:
        return telemetry.tracing
    return process_tracing()


def process_tracing() -> Tracing | None:
    """A `Tracing` over the tracer provider set for the whole process through the
    OpenTelemetry API, or None when none is (the API's default: spans would go nowhere)."""
    # Nothing imported the API yet: nobody can have set a provider through it, and the
    # only other way, the OTEL_PYTHON_TRACER_PROVIDER variable, is looked at below. Skip
    # importing it (and its entry points) for an app that traces nothing.
    if "opentelemetry.trace" not in sys.modules and not os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"):
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    from kaiju import __version__
    from kaiju.telemetry.tracing import Tracing

    return Tracing(provider.get_tracer(_TRACER, __version__))
