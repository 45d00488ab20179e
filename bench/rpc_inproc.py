"""The dispatcher in-process: bytes in, bytes out, 128 callers that really interleave.

    .venv/bin/python bench/rpc_inproc.py

Measures `RPCServer.handle` serving `echo.echo(data)` (GUEST method: params validation and
the permission check are on), and again with one no-op RPC middleware installed (what a
middleware costs per call; with none the server has no chain at all), then, in the same run, kaiju-tools 2.4.26
(`shared/peers/kaiju_tools_inproc.py`, KAIJU_BENCH_INTERLEAVE=1) and the ceiling
(`shared/peers/limit_inproc.py`: decode, await, encode, nothing else). Each is run ROUNDS
times, alternating, and the best round counts. Env: N (requests, default 200000),
ROUNDS (default 3), KAIJU_PEERS (the peers folder), PEER_PYTHON (kaiju-tools' python),
KAIJU_LOOP (kaiju's loop; default asyncio's, the one the ceiling script runs on, so the ratio
is like for like; with uvloop, kaiju-tools runs on it too: KAIJU_BENCH_UVLOOP=1).
Also pjrpc's dispatcher (`shared/peers/pjrpc_inproc.py`), the fastest Python JSON-RPC library's.

Tracing (the Telemetry service, one span per call), in the same run: at sample_ratio 0.1
and 1.0 exporting over OTLP/HTTP to a local receiver that drops the data
(`bench/otlp_sink.py`, a process of its own); and, to say where the time goes at 1.0, at
0.0 (the span objects and context alone: every call sampled out) and at 1.0 with nothing
exported (spans made and given their attributes, then dropped: a tracer provider with no
processor; run in a child process, `rpc_inproc.py spans`, as the process keeps that provider
for life). The differences are span creation, attribute building and recording, export.
The same on a stream consumer, beside FastStream's own tracing middleware:
bench/streams_tracing.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from echo_service import EchoService

from kaiju.rpc import RPCServer
from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
from kaiju.telemetry.provider import process_tracing
from kaiju.testing.services import started



def find_peers() -> Path:
    """KAIJU_PEERS, else `../shared/peers` from the repo root (or from any folder above it)."""
    if os.environ.get("KAIJU_PEERS"):
        return Path(os.environ["KAIJU_PEERS"])
    root = Path(__file__).resolve().parents[1]
    for folder in (root.parent, *root.parent.parents):
        if (folder / "shared" / "peers").is_dir():
            return folder / "shared" / "peers"
    return root.parent / "shared" / "peers"


PEERS = find_peers()
N = int(os.environ.get("N", "200000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PARALLEL = 128
BODY = b'{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"data":{"hello":"world","n":[1,2,3]}}}'


async def noop(call, call_next):
    """A middleware that does nothing but pass the call on."""
    return await call_next(call)


def telemetry(variant: str, sink: str) -> list:
    """The Telemetry service of a tracing variant: "otlp:RATIO" (exported to `sink`) or
    "none" (the process's own provider, which records spans and exports nothing)."""
    from kaiju.telemetry import Telemetry

    if variant == "none":
        return [Telemetry(exporter="none")]
    return [Telemetry(endpoint=sink, sample_ratio=float(variant.partition(":")[2]), global_provider=False)]


def recording_provider() -> None:
    """Make the process's tracer provider an SDK one that records every span and has no
    processor: spans are built whole, then dropped (the "none" variant's provider).

    Only ever in a process of its own (`rpc_inproc.py spans`): a process keeps its provider
    for life, and kaiju traces to the process's provider even without Telemetry, so every
    untraced variant after it would be traced too."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())


async def ours(n: int, middleware: bool = False, services: list | None = None) -> float:
    if not services and process_tracing() is not None:  # kaiju would trace to it, Telemetry or not
        raise RuntimeError("an untraced variant would be traced: the process has a tracer provider")
    rpc = RPCServer(middleware=[noop] if middleware else [])
    async with started(*(services or ()), EchoService(), rpc):
        body, _ = await rpc.handle(BODY)
        assert b'"result"' in body, body
        left = n
        handle = rpc.handle  # as a transport holds it (the ceiling calls a plain function too)

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await handle(BODY)
                await asyncio.sleep(0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(PARALLEL)))
        return n / (time.perf_counter() - t0)


def peer_python() -> str:
    if os.environ.get("PEER_PYTHON"):
        return os.environ["PEER_PYTHON"]
    return subprocess.run([str(PEERS / "setup.sh")], check=True, capture_output=True, text=True).stdout.strip()


def run_script(python: str, script: str | Path, key: str, env: dict[str, str], *args: str) -> float:
    out = subprocess.run(
        [python, str(PEERS / script), *args], check=True, capture_output=True, text=True, env={**os.environ, **env}
    )
    found = re.search(rf"{key}=(\d+)", out.stdout)
    if not found:
        raise RuntimeError(f"{script} printed no {key}: {out.stdout!r} {out.stderr[-500:]!r}")
    return float(found[1])


class Sink:
    """bench/otlp_sink.py on a free port, for the length of a `with` block (which gets its
    URL); `options` are the sink's own (`--count-spans`, for `stats()`)."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.url = ""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        here = Path(__file__).resolve().parent
        self.proc = subprocess.Popen(
            [sys.executable, str(here / "otlp_sink.py"), str(port), *self.options], stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("sink="):
            raise RuntimeError(f"the OTLP sink did not start: {line!r}")
        self.url = line.strip().partition("=")[2]
        return self.url

    def stats(self) -> dict:
        """The sink's totals so far: requests, bytes, spans, spans by kind (`--count-spans`)."""
        import json
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        with opener.open(self.url.replace("/v1/traces", "/stats"), timeout=120) as answer:
            return json.load(answer)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


TRACED = {"kaiju+trace0.1": "otlp:0.1", "kaiju+trace1.0": "otlp:1.0", "kaiju+trace0.0": "otlp:0.0", "kaiju+spans1.0": "none"}


def main() -> None:
    if sys.argv[1:] == ["spans"]:  # the "none" variant, in a process of its own (see recording_provider)
        recording_provider()
        with asyncio.Runner(loop_factory=loop_factory(choose_loop("asyncio"))) as runner:
            rps = runner.run(ours(N, services=telemetry("none", "")))
        print(f"kaiju_spans_rps={rps:.0f}")
        return
    with Sink() as sink:
        run(sink)


def run(sink: str) -> None:
    peer_py = peer_python()
    factory = loop_factory(choose_loop("asyncio"))
    probe = factory()
    loop = loop_name(probe)
    probe.close()
    peer_env = {"KAIJU_BENCH_INTERLEAVE": "1", **({"KAIJU_BENCH_UVLOOP": "1"} if loop == "uvloop" else {})}
    best = {"kaiju": 0.0, "kaiju+mw": 0.0, "kaiju-tools": 0.0, "pjrpc": 0.0, "ceiling": 0.0, **dict.fromkeys(TRACED, 0.0)}
    for _ in range(ROUNDS):
        best["ceiling"] = max(best["ceiling"], run_script(sys.executable, "limit_inproc.py", "limit_inproc_rps", {"N": str(N)}))
        with asyncio.Runner(loop_factory=factory) as runner:
            best["kaiju"] = max(best["kaiju"], runner.run(ours(N)))
        with asyncio.Runner(loop_factory=factory) as runner:
            best["kaiju+mw"] = max(best["kaiju+mw"], runner.run(ours(N, middleware=True)))
        for name, variant in TRACED.items():
            if variant == "none":
                rps = run_script(sys.executable, Path(__file__).resolve(), "kaiju_spans_rps", {}, "spans")
            else:
                with asyncio.Runner(loop_factory=factory) as runner:
                    rps = runner.run(ours(N, services=telemetry(variant, sink)))
            best[name] = max(best[name], rps)
        best["kaiju-tools"] = max(
            best["kaiju-tools"], run_script(peer_py, "kaiju_tools_inproc.py", "kaiju_inproc_rps", peer_env)
        )
        # pjrpc's dispatcher (the fastest Python JSON-RPC library's), driven the same way
        best["pjrpc"] = max(best["pjrpc"], run_script(peer_py, "pjrpc_inproc.py", "pjrpc_inproc_rps", {"N": str(N), "ROUNDS": "1"}))
    print(f"rpc in-process, {PARALLEL} interleaving callers, echo(data), best of {ROUNDS} rounds")
    print(f"loop: kaiju {loop}, kaiju-tools {loop}, ceiling asyncio (limit_inproc.py has no switch)")
    print(f"kaiju        {best['kaiju']:>10.0f} calls/s")
    print(f"kaiju+mw     {best['kaiju+mw']:>10.0f} calls/s   one no-op middleware costs {1 - best['kaiju+mw'] / best['kaiju']:.1%}")
    k = best["kaiju"]
    for name, note in (
        ("kaiju+trace0.1", "traced at sample_ratio 0.1, exported (target: cost <= 5%)"),
        ("kaiju+trace1.0", "traced at 1.0, every span exported"),
        ("kaiju+trace0.0", "spans made, every one sampled out (creation and context only)"),
        ("kaiju+spans1.0", "spans recorded with their attributes, none exported"),
    ):
        print(f"{name:<14} {best[name]:>8.0f} calls/s   costs {1 - best[name] / k:.1%}: {note}")
    per_call = {name: 1e6 / best[name] - 1e6 / k for name in TRACED}  # microseconds added per call
    print(
        f"at 1.0, per call: span creation {per_call['kaiju+trace0.0']:.2f} us, attributes and recording "
        f"{per_call['kaiju+spans1.0'] - per_call['kaiju+trace0.0']:.2f} us, export "
        f"{per_call['kaiju+trace1.0'] - per_call['kaiju+spans1.0']:.2f} us"
    )
    print(f"kaiju-tools  {best['kaiju-tools']:>10.0f} calls/s   kaiju/kaiju-tools = {best['kaiju'] / best['kaiju-tools']:.2f}x (target >= 2.3x)")
    print(f"pjrpc        {best['pjrpc']:>10.0f} calls/s   kaiju/pjrpc = {best['kaiju'] / best['pjrpc']:.2f}x (asyncio's loop)")
    print(f"ceiling      {best['ceiling']:>10.0f} calls/s   kaiju/ceiling = {best['kaiju'] / best['ceiling']:.0%} (target >= 60%)")


if __name__ == "__main__":
    main()
