"""Throw mutated JSON-RPC bodies at a real kaiju HTTP server and count the answers that break
the JSON-RPC invariant (tests/rpc/fuzzing.py: a valid answer, nothing for a notification,
never InternalError, never an HTTP error status). A correctness run, loopback only, bounded
in count and time.

    .venv/bin/python bench/fuzz_http.py [--count 50000] [--seconds 900] [--seed 1]

The server (echo.echo, RPCServer, HTTPServer on a free 127.0.0.1 port) runs in a child
process started by this script, so its RSS is its own: printed first and last, with the
violation counts (goal: 0) and the tracebacks and ERROR lines in its log (goal: 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.rpc.fuzzing import HEADER_NAMES, SEEDS, mutate, violation  # noqa: E402

HEADER_VALUES = ["1", "?1", "?0", "0.5", "x", "1e400", "", "9" * 30, "-1", "a" * 200, "\u00b2"]


async def serve(port: int) -> None:
    from echo_service import EchoService

    from kaiju.http.server import HTTPServer
    from kaiju.rpc import RPCServer
    from kaiju.testing.services import started

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with started(EchoService(), RPCServer(default_request_time=10.0), HTTPServer(host="127.0.0.1", port=port)):
        print("ready", flush=True)
        await stop.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def attack(url: str, pid: int, count: int, seconds: float, seed: int, parallel: int) -> dict:
    import aiohttp

    rng = random.Random(seed)
    found: collections.Counter[str] = collections.Counter()
    examples: dict[str, bytes] = {}
    sent = 0
    deadline = time.monotonic() + seconds
    queue: asyncio.Queue = asyncio.Queue(maxsize=parallel * 2)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while True:
            item = await queue.get()
            if item is None:
                return
            body, headers = item
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    problem = violation(body, resp.status, await resp.read())
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                problem = f"transport: {type(exc).__name__}"
            sent += 1
            if problem:
                kind = problem.split(":")[0]
                found[kind] += 1
                examples.setdefault(kind, body[:300])

    first = rss_kib(pid)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=parallel)) as session:
        workers = [asyncio.ensure_future(worker(session)) for _ in range(parallel)]
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            headers = {rng.choice(HEADER_NAMES): rng.choice(HEADER_VALUES)} if rng.random() < 0.2 else {}
            headers["Content-Type"] = "application/json"
            await queue.put((mutate(rng, rng.choice(SEEDS)), headers))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return {"sent": sent, "violations": found, "examples": examples, "rss_first": first, "rss_last": rss_kib(pid)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="bodies to send (at most 1,000,000)")
    parser.add_argument("--seconds", type=float, default=900.0, help="stop sending after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child: serve on this port
    args = parser.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.INFO)
        asyncio.run(serve(args.serve))
        return 0

    from kaiju.testing import free_port

    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"the server did not start (exit {child.wait()})")
            began = time.monotonic()
            result = asyncio.run(attack(
                f"http://127.0.0.1:{port}/public/rpc", child.pid, min(args.count, 1_000_000), args.seconds, args.seed,
                args.parallel,
            ))
            took = time.monotonic() - began
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(30)
        log.seek(0)
        text = log.read()
    tracebacks = text.count("Traceback (most recent call last)")
    errors = sum(1 for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line)
    print(f"sent {result['sent']} bodies in {took:.1f} s (seed {args.seed})")
    print(f"violations: {sum(result['violations'].values())}")
    for kind, n in result["violations"].most_common():
        print(f"  {n:7d}  {kind}  e.g. {result['examples'][kind]!r}")
    print(f"server log: {tracebacks} tracebacks, {errors} ERROR lines")
    print(f"server RSS: first {result['rss_first'] / 1024:.1f} MiB, last {result['rss_last'] / 1024:.1f} MiB")
    print(f"server exit status: {child.returncode}")
    return 1 if result["violations"] or tracebacks or errors else 0


if __name__ == "__main__":
    sys.exit(main())
