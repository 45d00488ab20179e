"""kaiju's side of bench/rpc_http.sh: echo.echo over HTTP on 127.0.0.1:PORT until SIGTERM/SIGINT.

    .venv/bin/python bench/rpc_http_server.py PORT [metrics|middleware|ratelimit|trace:RATIO] [OTLP_URL]

With `metrics`, the app also runs the Metrics service (its RPC requests are counted); with
`middleware`, the RPC server has one no-op middleware (what a middleware costs); with
`ratelimit`, one rate limit on echo.echo per address, in memory, high enough never to refuse
(what counting every call costs); with
`trace:0.1` (or any ratio), the Telemetry service traces the requests at that sample ratio,
exporting over OTLP/HTTP to OTLP_URL (bench/otlp_sink.py, which drops the data). Runs on
the loop kaiju-run would (KAIJU_LOOP, else uvloop when installed) and prints `loop=NAME` once
serving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from echo_service import EchoService

from kaiju.http.server import HTTPServer
from kaiju.metrics import Metrics
from kaiju.rpc import RPCServer
from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
from kaiju.testing.services import started


async def noop(call, call_next):
    """A middleware that does nothing but pass the call on."""
    return await call_next(call)


def rate_limits(variant: str) -> list:
    """One limit on echo.echo per address for `ratelimit` (never reached: every call is counted, none refused)."""
    if variant != "ratelimit":
        return []
    from kaiju.ratelimit import Rate, RateLimit

    return [RateLimit(methods="echo.echo", per="ip", rate=Rate("100000000/second"))]


async def serve(port: int, variant: str = "", sink: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    extra: list = [Metrics()] if variant == "metrics" else []
    if variant.startswith("trace:"):
        from kaiju.telemetry import Telemetry

        extra.insert(0, Telemetry(endpoint=sink, sample_ratio=float(variant.partition(":")[2])))
    rpc = RPCServer(middleware=[noop] if variant == "middleware" else [], rate_limits=rate_limits(variant))
    async with started(*extra, EchoService(), rpc, HTTPServer(host="127.0.0.1", port=port)):
        print(f"loop={loop_name()}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    with asyncio.Runner(loop_factory=loop_factory(choose_loop())) as runner:
        runner.run(serve(int(sys.argv[1]), *sys.argv[2:4]))
