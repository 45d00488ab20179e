"""OpenTelemetry: one trace per request, across HTTP, RPC, streams and tasks (the `Telemetry` service).

Only the OpenTelemetry API is a dependency of kaiju; the SDK and the OTLP exporter come
with the `otel` extra and are imported when a `Telemetry` service starts. Names are
imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.telemetry.service import Telemetry

__getattr__ = _front_door(__name__, __file__, globals())
