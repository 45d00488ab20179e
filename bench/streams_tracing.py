"""What tracing every message costs a stream consumer: kaiju's listener beside FastStream's
own tracing middleware, consuming the same pre-filled Redis stream.

    .venv/bin/python bench/streams_tracing.py [--messages 20000] [--batch 100] [--rounds 3] [--no-peer]

The consume-only shape of bench/streams.py: a stream is filled with N JSON-RPC echo
requests (untraced), then only the consuming is timed (read through a consumer group,
decode, run the echo method, acknowledge). Each side runs untraced and traced at
sample_ratio 1.0, the spans going through a BatchSpanProcessor (queue 2048, every 1 s)
and the OTLP/HTTP exporter to bench/otlp_sink.py (a local receiver that drops the data,
started once, a process of its own, counting the spans it gets):

- kaiju: StreamListener + RPCServer on RedisStream (bench/streams.py's `kaiju_loop`),
  traced by the Telemetry service. Per message: a consumer span `process <topic>` and,
  its child, the RPC call's span `bench.echo`. To say where its time goes at 1.0, also at
  sample_ratio 0.0 (span objects and context alone: every message sampled out) and at 1.0
  with `exporter: memory` (spans made, given their attributes and kept in a list, none
  encoded or sent);
- FastStream 0.7.8: `bench/faststream_traced.py`, the consume-only shape of FastStream's
  peer script (`StreamSub`, one XACK per message), traced by its own
  `RedisTelemetryMiddleware` (faststream.redis.opentelemetry) over a tracer provider made
  by the same function as kaiju's (kaiju/telemetry/sdk.py). Per message: a consumer span
  `<stream> process` and, when the message carries no trace context, a `<stream> create`
  span before it (ended at once: the trace's root). It runs in a virtualenv of its own,
  made here once (~/.cache/kaiju-peers/faststream-otel, or $PEER_FS_OTEL_VENV) with
  `faststream[redis,otel]==0.7.8`, hiredis, uvloop, the OpenTelemetry SDK and the
  OTLP/HTTP exporter. `--no-peer` skips it.

For each side: messages/s untraced and traced, the cost in % of throughput and in µs per
message (1/traced - 1/untraced), and the spans the sink received per message (by kind),
best of --rounds rounds, the variants taking turns (each side's process first consumes 500
messages untimed). Both sides use one redis-server (kaiju.testing.redis, no persistence)
and the same event loop: asyncio's, or KAIJU_LOOP's.
`--traceparent` puts a sampled W3C `traceparent` in every message's headers, as a traced
producer would: the consumer spans continue that trace (FastStream then makes no create
span). Spans the batch processor drops (its queue full) show as fewer spans per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from rpc_inproc import Sink
from streams import kaiju_loop

from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
from kaiju.telemetry.provider import process_tracing
from kaiju.testing.redis import RedisServer

HERE = Path(__file__).resolve().parent
FASTSTREAM = "0.7.8"
VENV = Path(os.environ.get("PEER_FS_OTEL_VENV") or Path.home() / ".cache" / "kaiju-peers" / "faststream-otel")
WARM_UP = 500  # messages of each side's untimed first round
# FastStream's virtualenv: uvloop too, so that it runs on kaiju's loop when that is uvloop
PACKAGES = (
    f"faststream[redis,otel]=={FASTSTREAM}",
    "hiredis",
    "uvloop",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def faststream_python() -> str:
    """The python of FastStream's virtualenv; made, or completed, when a package is missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = (
        f"from importlib.metadata import version; assert version('faststream') == '{FASTSTREAM}'; "
        "import faststream.redis.opentelemetry, hiredis, uvloop, opentelemetry.sdk.trace, "
        "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    )
    if subprocess.run([str(python), "-c", check], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return str(python)


def telemetry(sink: str, ratio: float = 1.0, exporter: str = "otlp") -> list:
    """kaiju's Telemetry service at sample_ratio `ratio`, exporting to `sink` (or, with
    exporter "memory", keeping the spans in the process)."""
    from kaiju.telemetry import Telemetry

    return [Telemetry(endpoint=sink, sample_ratio=ratio, exporter=exporter, global_provider=False)]


def faststream(python: str, url: str, sink: str, args: argparse.Namespace, loop: str) -> dict[str, str]:
    """One round of FastStream's side (untraced, then traced): the `faststream_*` lines it printed."""
    command = [
        python,
        str(HERE / "faststream_traced.py"),
        "--redis",
        url,
        "--sink",
        sink,
        "--messages",
        str(args.messages),
        "--batch",
        str(args.batch),
        "--loop",
        loop,
    ]
    if args.traceparent:
        command += ["--traceparent", TRACEPARENT]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"faststream_traced.py failed: {done.stderr[-2000:]}")
    lines = (line.partition("=") for line in done.stdout.splitlines() if line.startswith("faststream_"))
    figures = {key: value for key, _, value in lines}
    if figures.get("faststream_loop") != loop:
        raise RuntimeError(f"FastStream did not run on {loop}: {done.stdout!r}")
    return figures


class Spans:
    """The spans the sink received during a `with` block: `count` and `kinds` (by kind)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.count = 0
        self.kinds: dict[str, int] = {}

    def __enter__(self) -> Spans:
        self.before = self.sink.stats()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.sink.stats()
        self.count += after["spans"] - self.before["spans"]
        for kind, total in after["kinds"].items():
            self.kinds[kind] = self.kinds.get(kind, 0) + total - self.before["kinds"].get(kind, 0)


def report(name: str, untraced: float, traced: float, spans: Spans, messages: int) -> float:
    """Print one side's line; its cost in µs per message."""
    cost_us = 1e6 / traced - 1e6 / untraced
    kinds = ", ".join(
        f"{kind.removeprefix('SPAN_KIND_').lower()} {total / messages:.2f}"
        for kind, total in sorted(spans.kinds.items())
        if total
    )
    print(
        f"{name:<22} {untraced:>10,.0f} {traced:>10,.0f} {1 - traced / untraced:>7.1%} {cost_us:>9.2f}"
        f"   {spans.count / messages:.2f} ({kinds})"
    )
    return cost_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000, help="pre-filled requests per round")
    parser.add_argument("--batch", type=int, default=100, help="entries per XREADGROUP")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per figure")
    parser.add_argument("--no-peer", action="store_true", help="skip FastStream")
    parser.add_argument("--traceparent", action="store_true", help="every message carries a sampled traceparent")
    args = parser.parse_args()
    factory = loop_factory(choose_loop("asyncio"))
    probe = factory()
    loop = loop_name(probe)
    probe.close()
    python = None if args.no_peer else faststream_python()
    headers = {"traceparent": TRACEPARENT} if args.traceparent else None
    sink = Sink("--count-spans")
    server = RedisServer(persistent=False)
    server.start()
    best = dict.fromkeys(
        ("kaiju", "kaiju+trace", "kaiju+trace0.0", "kaiju+kept", "faststream", "faststream+trace"), 0.0
    )
    spans = {"kaiju": Spans(sink), "faststream": Spans(sink)}
    versions = ""
    try:
        with sink as url:
            # untimed, untraced: the process's first messages pay for connections and first calls
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(kaiju_loop(server.url, min(args.messages, WARM_UP), args.batch, True, 1, (), headers))
            for _ in range(args.rounds):
                for name, extra in (
                    ("kaiju", []),
                    ("kaiju+trace", telemetry(url)),
                    ("kaiju+trace0.0", telemetry(url, 0.0)),
                    ("kaiju+kept", telemetry(url, exporter="memory")),
                ):
                    if not extra and process_tracing() is not None:  # kaiju would trace to it
                        raise RuntimeError("the untraced variant would be traced: the process has a tracer provider")
                    with asyncio.Runner(loop_factory=factory) as runner, spans["kaiju"]:
                        rps = runner.run(kaiju_loop(server.url, args.messages, args.batch, True, 1, extra, headers))
                    best[name] = max(best[name], rps)
                if python is not None:
                    with spans["faststream"]:
                        figures = faststream(python, server.url, url, args, loop)
                    versions = figures["faststream_versions"]
                    best["faststream"] = max(best["faststream"], float(figures["faststream_untraced_rps"]))
                    best["faststream+trace"] = max(best["faststream+trace"], float(figures["faststream_traced_rps"]))
    finally:
        server.cleanup()
    shape = "carrying a sampled traceparent" if args.traceparent else "no trace context in the messages"
    print(
        f"stream consumption, traced at sample_ratio 1.0 and not: {args.messages} pre-filled JSON-RPC requests per "
        f"round ({shape}), batch {args.batch}, best of {args.rounds} rounds, alternating"
    )
    print(
        f"event loop {loop} (both sides); redis-server on 127.0.0.1 (one for both); python {sys.version.split()[0]}"
        + (f"; {versions}" if versions else "")
    )
    print("spans: BatchSpanProcessor (queue 2048, every 1 s), OTLP/HTTP to bench/otlp_sink.py (drops them)\n")
    print(f"{'':<22} {'untraced':>10} {'traced':>10} {'cost':>7} {'µs/msg':>9}   spans/msg exported (by kind)")
    total = args.messages * args.rounds
    ours = report("kaiju StreamListener", best["kaiju"], best["kaiju+trace"], spans["kaiju"], total)
    created, kept = (1e6 / best[name] - 1e6 / best["kaiju"] for name in ("kaiju+trace0.0", "kaiju+kept"))
    where = (
        f"\nwhere kaiju's {ours:.2f} µs per message at 1.0 go: span creation and context {created:.2f} µs "
        f"(at sample_ratio 0.0),\n  attributes and recording {kept - created:.2f} µs (spans kept in memory), "
        f"export {ours - kept:.2f} µs"
    )
    if python is None:
        print(f"FastStream not run (--no-peer)\n{where}")
        return
    peer = report(f"FastStream {FASTSTREAM}", best["faststream"], best["faststream+trace"], spans["faststream"], total)
    print(f"{where}\nkaiju's tracing costs {ours / peer:.2f}x FastStream's per message (target: below 1)")


if __name__ == "__main__":
    main()
