"""Logs and metrics join the trace: trace ids in log fields, exemplars on the latency histogram."""

from __future__ import annotations

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from kaiju.http.server import HTTPServer
from kaiju.metrics import Metrics
from kaiju.rpc import RPCServer
from kaiju.telemetry import Telemetry
from kaiju.testing import free_port
from kaiju.testing.services import started
from tests.telemetry.test_rpc_http_spans import Orders


async def test_log_fields_name_the_current_span_inside_one_only() -> None:
    tel = Telemetry(exporter="memory", global_provider=False)
    async with started(tel):
        fields = tel.log_fields()
        assert fields() is None  # outside any span
        tracing = tel.tracing
        assert tracing is not None
        with tracing.child("work") as span:
            inside = fields()
        context = span.get_span_context()
    assert inside == {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


async def test_the_latency_histogram_carries_trace_ids_when_the_scrape_asks_for_openmetrics() -> None:
    tel, metrics, http = Telemetry(exporter="memory", global_provider=False), Metrics(), HTTPServer(port=free_port())
    async with started(tel, RPCServer(), Orders(), metrics, http):
        url = http.url.removesuffix(http.rpc_path) + "/metrics"
        async with aiohttp.ClientSession() as session:
            body = {"jsonrpc": "2.0", "id": 1, "method": "orders.create", "params": {"qty": 1}}
            async with session.post(http.url, json=body) as response:
                assert (await response.json())["result"] == 11
            async with session.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}) as response:
                assert response.content_type == "application/openmetrics-text"
                openmetrics = await response.text()
            async with session.get(url) as response:
                assert response.content_type == "text/plain"
                text = await response.text()
        trace_ids = {f"{s.context.trace_id:032x}" for s in tel.spans("orders.create")}
    exemplars = [
        (s.labels["method"], s.exemplar.labels["trace_id"])
        for family in openmetrics_families(openmetrics)
        if family.name == "kaiju_rpc_request_duration_seconds"
        for s in family.samples
        if s.exemplar is not None
    ]
    # the call and its nested one ran in the same trace, each leaving its latency's exemplar
    assert sorted(exemplars) == sorted([("orders.create", *trace_ids), ("orders.price", *trace_ids)])
    assert "trace_id" not in text  # Prometheus' text format has no exemplars
    assert [f for f in text_string_to_metric_families(text) if f.name == "kaiju_rpc_request_duration_seconds"]
