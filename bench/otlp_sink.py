"""A local OTLP/HTTP receiver that drops what it gets: where the tracing benchmarks export to.

    .venv/bin/python bench/otlp_sink.py PORT [--count-spans]

Answers every `POST /v1/traces` with an empty `ExportTraceServiceResponse` (an empty body
is one) once the request is read, as a collector would, and counts the requests and bytes
(printed at SIGTERM/SIGINT). Runs in a process of its own, so receiving costs the measured
process nothing but the export itself. Used by bench/rpc_http.sh, bench/rpc_inproc.py and
bench/streams_tracing.py.

With `--count-spans` it also keeps the bodies, and `GET /stats` decodes what came since
the last call (with the `opentelemetry-proto` package: the OTLP exporter's own dependency)
and answers the totals so far as JSON: `requests`, `bytes`, `spans` and `kinds` (spans
per kind: `SPAN_KIND_CONSUMER`, ...). Decoding waits for that call, so it never runs while
a benchmark is timing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter

from aiohttp import web


def count_spans(bodies: list[bytes], kinds: Counter[str]) -> int:
    """Add the spans of the OTLP export requests `bodies` to `kinds` (by kind); their number."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    total = 0
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    kinds[Span.SpanKind.Name(span.kind)] += 1
                    total += 1
    return total


async def main(port: int, keep: bool) -> None:
    counts = {"requests": 0, "bytes": 0, "spans": 0}
    kinds: Counter[str] = Counter()
    bodies: list[bytes] = []  # with --count-spans: received, not yet decoded

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        counts["requests"] += 1
        counts["bytes"] += len(body)
        if keep:
            bodies.append(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(request: web.Request) -> web.Response:
        counts["spans"] += count_spans(bodies, kinds)
        bodies.clear()
        return web.json_response({**counts, "kinds": dict(kinds)})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receive)
    if keep:
        app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"sink=http://127.0.0.1:{port}/v1/traces", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    print(f"received requests={counts['requests']} bytes={counts['bytes']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), "--count-spans" in sys.argv[2:]))
