"""Without the `Telemetry` service: no OpenTelemetry at all, or the process's own tracer provider.

Each case runs in a fresh interpreter: a tracer provider set through the API stays for the
life of a process, and this one must keep none.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.runtime.test_cli import ROOT

APP = """
import asyncio, json, sys
from kaiju import rpc
from kaiju.rpc import RPCServer
from kaiju.runtime.service import Service
from kaiju.testing.services import started

class Shop(Service):
    service_name = "shop"
    rpc: RPCServer

    @rpc.method
    async def order(self) -> int:
        return await self.rpc.call("shop.price")

    @rpc.method
    async def price(self) -> int:
        return 3

async def main():
    server = RPCServer()
    async with started(server, Shop()):
        assert await server.call("shop.order") == 3
"""


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_an_app_without_telemetry_loads_nothing_of_opentelemetry() -> None:
    found = run(
        APP + "asyncio.run(main())\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))"
    )
    assert found == []


def test_a_tracer_provider_the_process_set_itself_gets_kaijus_spans() -> None:
    vendor = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)  # another vendor's SDK, set up before the app starts\n"
    )
    spans = run(
        vendor
        + APP
        + "asyncio.run(main())\n"
        + "print(json.dumps([[s.name, s.parent is not None, s.instrumentation_scope.name] for s in exporter.get_finished_spans()]))"
    )
    assert spans == [["shop.price", True, "kaiju"], ["shop.order", False, "kaiju"]]
