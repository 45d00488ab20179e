"""A local OTLP/HTTP receiver that drops what it gets: where the tracing benchmarks export to.

    .venv/bin/python bench/otlp_sink.py PORT

Answers every `POST /v1/traces` with an empty `ExportTraceServiceResponse` (an empty body
is one) once the request is read, as a collector would, and counts the requests and bytes
(printed at SIGTERM/SIGINT). Runs in a process of its own, so receiving costs the measured
process nothing but the export itself.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web


async def main(port: int) -> None:
    counts = {"requests": 0, "bytes": 0}

    async def receive(request: web.Request) -> web.Response:
        counts["requests"] += 1
        counts["bytes"] += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receive)
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
    asyncio.run(main(int(sys.argv[1])))
