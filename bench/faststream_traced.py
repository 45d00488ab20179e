"""FastStream's side of bench/streams_tracing.py: a Redis Streams consumer group, untraced and
with FastStream's own tracing middleware.

    PYTHON bench/faststream_traced.py --redis URL --sink OTLP_URL [--messages 20000] [--batch 100]
        [--loop asyncio|uvloop] [--traceparent TP]
    -> faststream_untraced_rps=<N>
       faststream_traced_rps=<N>

Runs in a virtualenv of its own with FastStream 0.7.8 (`faststream[redis,otel]`), made by
bench/streams_tracing.py, which runs this once per round and reads the two lines above.
The shape is the consume-only one of FastStream's peer script (`faststream_redis.py` in
the peers folder): the stream is filled with N JSON-RPC requests first (by a broker of
its own, without tracing, so no message carries a trace context unless --traceparent puts
one in every message's headers), then the broker is started and only the consuming is
timed, from the end of `broker.start()` until the handler has seen all N (after an untimed,
untraced warm-up round of 500). `StreamSub(stream, group=..., consumer=...,
max_records=--batch)`, `AckPolicy.ACK` (one XACK per message, after its handler), the
handler `body: dict` -> `echo(**params)`, access logging off.

Traced: the broker has `RedisTelemetryMiddleware(tracer_provider=...)`
(faststream.redis.opentelemetry), the provider made by the very function kaiju's
Telemetry service makes its own with (kaiju/telemetry/sdk.py, loaded by its path:
kaiju itself is not installed here): sample_ratio 1.0 (parent-based), a BatchSpanProcessor
with kaiju's defaults (queue 2048, every 1 s), the OTLP/HTTP exporter to `--sink`. The
middleware's metrics go to the API's meter provider (none is set: no-op), its default.
What is left to export when the timing ends is flushed afterwards, untimed, as kaiju's
Telemetry does at stop. Every variant checks afterwards that no message is left pending.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.opentelemetry import RedisTelemetryMiddleware

GROUP, CONSUMER = "bench", "c1"
WARM_UP = 500  # messages of the untimed first round
SDK = Path(__file__).resolve().parents[1] / "kaiju" / "telemetry" / "sdk.py"


async def echo(data: Any = None) -> Any:
    return data


METHODS = {"echo.echo": echo}


def tracer_provider(sink: str) -> Any:
    """The SDK tracer provider kaiju's Telemetry would make for `sink` at sample_ratio 1.0."""
    spec = importlib.util.spec_from_file_location("kaiju_telemetry_sdk", SDK)
    assert spec is not None and spec.loader is not None, SDK
    sdk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sdk)
    resource = {
        "service.name": "bench",
        "service.version": version("faststream"),
        "deployment.environment": "bench",
        "deployment.environment.name": "bench",
    }
    return sdk.tracer_provider(resource, 1.0, sdk.otlp_exporter(sink, 10.0))


async def prefill(url: str, stream: str, n: int, headers: dict[str, str] | None) -> None:
    """Write the `n` requests with a broker that does not trace."""
    broker = RedisBroker(url, logger=None)
    await broker.connect()
    try:
        for i in range(n):
            body = {"jsonrpc": "2.0", "method": "echo.echo", "params": {"data": i}}
            await broker.publish(body, stream=stream, headers=headers)
    finally:
        await broker.stop()


async def one_round(url: str, n: int, batch: int, provider: Any, headers: dict[str, str] | None) -> float:
    """Messages per second consuming `n` pre-filled requests (traced when `provider` is given)."""
    stream = f"fs.{time.monotonic_ns()}"
    admin = aioredis.from_url(url)
    # the group is made at 0 before anything is written, so the pre-filled stream is read whole
    await admin.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await prefill(url, stream, n, headers)
    middlewares = [RedisTelemetryMiddleware(tracer_provider=provider)] if provider is not None else []
    broker = RedisBroker(url, logger=None, middlewares=middlewares)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        stream=StreamSub(stream, group=GROUP, consumer=CONSUMER, max_records=batch), ack_policy=AckPolicy.ACK
    )
    async def handle(body: dict) -> Any:
        nonlocal seen
        result = await METHODS[body["method"]](**body["params"])
        seen += 1
        if seen >= n:
            done.set()
        return result

    await broker.connect()
    try:
        await broker.start()
        start = time.perf_counter()
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - start
        # the last ack follows the last handler: give it a moment (untimed) before stopping
        for _ in range(100):
            if (await admin.xpending(stream, GROUP))["pending"] == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await broker.stop()
    pending = (await admin.xpending(stream, GROUP))["pending"]
    await admin.delete(stream)
    await admin.aclose()
    if seen != n or pending:
        raise RuntimeError(f"handled {seen} of {n}, {pending} left pending")
    return n / elapsed


async def main(args: argparse.Namespace) -> None:
    headers = {"traceparent": args.traceparent} if args.traceparent else None
    # a short round first, untimed: what the first messages of a process pay (connections,
    # the handler's first call) must not fall on the untraced figure alone
    await one_round(args.redis, min(args.messages, WARM_UP), args.batch, None, headers)
    untraced = await one_round(args.redis, args.messages, args.batch, None, headers)
    provider = tracer_provider(args.sink)
    try:
        traced = await one_round(args.redis, args.messages, args.batch, provider, headers)
    finally:
        if not provider.force_flush(30_000):
            raise RuntimeError("the spans were not all exported within 30 s")
        provider.shutdown()
    print(f"faststream_versions=faststream {version('faststream')}, opentelemetry-sdk {version('opentelemetry-sdk')}")
    print(f"faststream_loop={type(asyncio.get_running_loop()).__module__.partition('.')[0]}")
    print(f"faststream_untraced_rps={untraced:.0f}")
    print(f"faststream_traced_rps={traced:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--sink", required=True, help="OTLP/HTTP traces URL (bench/otlp_sink.py)")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100, help="max_records: entries per XREADGROUP")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--traceparent", help="a W3C traceparent every message carries")
    arguments = parser.parse_args()
    logging.disable(logging.CRITICAL)
    if arguments.loop == "uvloop":
        import uvloop

        factory: Any = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(arguments))
