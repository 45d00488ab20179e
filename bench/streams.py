"""Requests per second through a stream topic: kaiju's listener beside a raw redis-py loop.

    .venv/bin/python bench/streams.py [--messages 20000] [--batch 100] [--producers 64]

Starts its own redis-server (kaiju.testing.redis.RedisServer, no persistence). Every
variant does the same work per message: write a JSON-RPC request to a stream (one XADD
each, as a producer would), read it through a consumer group, decode it, run an echo
coroutine, acknowledge it. Two shapes are timed:

- end-to-end: `--producers` concurrent producer tasks (64 by default; 1 for the shape of
  earlier runs) write while the consumer reads, until all are acknowledged; kaiju's
  producers' XADDs of one loop iteration share a pipeline (auto-pipelining), raw
  redis-py's go one command each;
- consume: the stream is filled first, then only the consuming is timed.

Variants: the raw redis-py XADD / XREADGROUP / XACK loop (the ceiling), kaiju's
StreamProducer + StreamListener + RPCServer on RedisStream, and on MemoryStream.

The peer, in the same run: FastStream's Redis Streams consumer group
(`faststream_redis.py` in the peers folder, run in its own virtualenv: `--peers DIR`, else
`$KAIJU_PEERS`, else `../shared/peers` beside the checkout), once with its per-message
handler (one XACK per message) and once with `--batch-handler` (one XACK per read). It
starts its own redis-server; its figures are printed beside kaiju's. `--no-peer` skips it.
What tracing costs each in the consume shape: bench/streams_tracing.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from kaiju import rpc  # noqa: E402
from kaiju.redis import RedisConnection  # noqa: E402
from kaiju.rpc.server import RPCServer  # noqa: E402
from kaiju.runtime.service import App, Service  # noqa: E402
from kaiju.streams.listener import StreamListener  # noqa: E402
from kaiju.streams.memory import MemoryStream  # noqa: E402
from kaiju.streams.producer import StreamProducer  # noqa: E402
from kaiju.streams.redis import RedisStream  # noqa: E402
from kaiju.streams.service import Streams  # noqa: E402
from kaiju.testing.redis import RedisServer  # noqa: E402
from kaiju.testing.services import started  # noqa: E402


class Echo(Service):
    service_name = "bench"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.count = 0
        self.done = asyncio.Event()
        self.target = 0

    async def start(self) -> None:
        pass

    async def stop(self, exception: Exception | None = None) -> None:
        pass

    @rpc.method
    async def echo(self, value: int) -> int:
        self.count += 1
        if self.count >= self.target:
            self.done.set()
        return value


async def _echo(value: Any) -> Any:
    return value


async def in_parallel(n: int, producers: int, write: Any) -> None:
    """`write(i)` for i in range(n), from `producers` concurrent tasks."""

    async def producer(first: int) -> None:
        for i in range(first, n, producers):
            await write(i)

    await asyncio.gather(*(producer(p) for p in range(min(producers, n))))


async def echo_server(n: int) -> RPCServer:
    """An RPCServer serving `Echo` (for `n` requests), started by hand as a raw loop would use it."""
    echo = Echo()
    echo.target = n + 1
    server = RPCServer()
    app = App(name="bench", env="bench")
    for svc in (echo, server):
        svc.bind(app)
        app.services[svc.name] = svc
        svc.set_loop(asyncio.get_running_loop())
        await svc.start()
    app.started.set()  # the dispatcher holds requests until the app has started
    return server


async def raw_loop(url: str, n: int, batch: int, prefill: bool, dispatch: bool = False, producers: int = 1) -> float:
    """The ceiling: redis-py straight, no framework; with `dispatch`, each request also goes
    through `RPCServer.handle` (the least any listener on this dispatcher must spend)."""
    client = aioredis.from_url(url)
    server = await echo_server(n) if dispatch else None
    stream, group = f"raw.{time.monotonic_ns()}", "g"
    await client.xgroup_create(stream, group, id="0", mkstream=True)
    decode = msgspec.json.decode
    encode = msgspec.json.encode

    async def write(i: int) -> None:
        body = encode({"jsonrpc": "2.0", "method": "bench.echo", "params": {"value": i}})
        await client.xadd(stream, {"b": body, "h": b'{"Correlation-Id":"x"}'})

    async def produce() -> None:
        await in_parallel(n, producers, write)

    async def consume() -> None:
        done = 0
        while done < n:
            reply = await client.xreadgroup(group, "c", {stream: ">"}, count=batch, block=1000)
            if not reply:
                continue
            ids = []
            for msg_id, fields in reply[0][1]:
                if server is not None:
                    await server.handle(b'{"id":0,' + fields[b"b"][1:], decode(fields[b"h"]), scope=0)
                else:
                    request = decode(fields[b"b"])
                    decode(fields[b"h"])
                    await _echo(request["params"]["value"])
                ids.append(msg_id)
            await client.xack(stream, group, *ids)
            done += len(ids)

    if prefill:
        await produce()
        start = time.perf_counter()
        await consume()
    else:
        start = time.perf_counter()
        await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - start
    await client.delete(stream)
    await client.aclose()
    if server is not None:
        await server.stop()
    return n / elapsed


async def kaiju_loop(
    url: str | None,
    n: int,
    batch: int,
    prefill: bool,
    producers: int = 1,
    extra: Sequence[Service] = (),
    headers: Mapping[str, str] | None = None,
) -> float:
    """kaiju: StreamProducer.call -> stream -> StreamListener -> RPCServer -> Echo.echo -> ack.

    `extra` services start first (a Telemetry traces what starts after it: the consuming
    side, and end-to-end the producer too); `headers` go with every request written."""
    backend: list[Service] = [RedisConnection(url=url), RedisStream()] if url else [MemoryStream()]
    backend.append(Streams())  # the listener's service above the storage
    echo = Echo()
    echo.target = n
    producer = StreamProducer()
    listener = StreamListener(topic=f"t{time.monotonic_ns()}", batch_size=batch, block_ms=1000)
    app = App(name="bench", env="bench")

    async def write(i: int) -> None:
        await producer.call("bench.echo", {"value": i}, topic=listener.topic, headers=headers)

    async def produce() -> None:
        await in_parallel(n, producers, write)

    if prefill:
        # fill before the listener starts, then time the consuming alone
        async with started(*backend, producer, app=app):
            await produce()
            listener.streams = backend[-1]
            async with started(*extra, echo, RPCServer(), listener, app=app):
                start = time.perf_counter()
                await asyncio.wait_for(echo.done.wait(), 300)
                elapsed = time.perf_counter() - start
    else:
        async with started(*extra, *backend, echo, RPCServer(), listener, producer, app=app):
            start = time.perf_counter()
            await asyncio.gather(produce(), asyncio.wait_for(echo.done.wait(), 300))
            elapsed = time.perf_counter() - start
    return n / elapsed


def peers_dir(given: str | None) -> Path | None:
    """The peers folder: `given`, else $KAIJU_PEERS, else `../shared/peers` beside the checkout
    (or beside its parent, for a worktree one level further down)."""
    root = Path(__file__).resolve().parents[1]
    candidates = [given] if given else [os.environ.get("KAIJU_PEERS"), root.parent / "shared" / "peers",
                                         root.parent.parent / "shared" / "peers"]
    for c in candidates:
        if c and (Path(c) / "faststream_redis.py").is_file():
            return Path(c)
    return None


def faststream(peers: Path, messages: int, batch: int, rounds: int, batch_handler: bool) -> dict[str, float] | str:
    """Run FastStream's peer in its own virtualenv; its figures, or why there are none."""
    try:
        python = subprocess.run([str(peers / "setup.sh"), "faststream"], check=True, capture_output=True,
                                text=True).stdout.strip().splitlines()[-1]
        args = [python, str(peers / "faststream_redis.py"), "--messages", str(messages), "--batch", str(batch),
                "--rounds", str(rounds)] + (["--batch-handler"] if batch_handler else [])
        out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=1800).stdout
    except (OSError, IndexError, subprocess.SubprocessError) as exc:
        return f"not run: {exc}"
    figures = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("faststream_") and "=" in line)
    return {"e2e": float(figures.get("faststream_e2e_rps", 0)), "consume": float(figures.get("faststream_consume_rps", 0))}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--producers", type=int, default=64, help="concurrent producer tasks (end-to-end)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per figure")
    parser.add_argument("--peers", help="folder holding faststream_redis.py and setup.sh")
    parser.add_argument("--no-peer", action="store_true", help="skip FastStream")
    args = parser.parse_args()
    peers = None if args.no_peer else peers_dir(args.peers)
    fs: dict[bool, dict[str, float] | str] = {}
    if peers is not None:
        # the peer runs first, alone (it brings its own redis-server), so that kaiju's rounds
        # below do not share the machine with it
        for batch_handler in (False, True):
            fs[batch_handler] = faststream(peers, args.messages, args.batch, args.rounds, batch_handler)
    loop = asyncio.get_running_loop()
    server = RedisServer(persistent=False)
    server.start()
    try:
        print(f"{args.messages} echo requests per round, batch {args.batch}, {args.producers} producers "
              f"(end-to-end; FastStream's peer: one), best of {args.rounds}; "
              f"redis-server on 127.0.0.1:{server.port}, python {sys.version.split()[0]}, "
              f"event loop {type(loop).__module__}.{type(loop).__qualname__} (FastStream: asyncio's default)")
        if peers is None:
            print("FastStream not run (" + ("--no-peer" if args.no_peer else "no peers folder: --peers DIR") + ")")
        for prefill in (False, True):
            shape = "consume only (pre-filled stream)" if prefill else "end-to-end (write + consume)"
            # the variants take turns, round after round, so that a change in the machine's load
            # (it is shared) falls on all of them alike
            best = {"raw": 0.0, "raw_rpc": 0.0, "ours": 0.0, "mem": 0.0}
            for _ in range(args.rounds):
                for name, run in (
                    ("raw", raw_loop(server.url, args.messages, args.batch, prefill, False, args.producers)),
                    ("raw_rpc", raw_loop(server.url, args.messages, args.batch, prefill, True, args.producers)),
                    ("ours", kaiju_loop(server.url, args.messages, args.batch, prefill, args.producers)),
                    ("mem", kaiju_loop(None, args.messages, args.batch, prefill, args.producers)),
                ):
                    best[name] = max(best[name], await run)
            raw, raw_rpc, ours, mem = best["raw"], best["raw_rpc"], best["ours"], best["mem"]
            print(f"\n{shape}")
            print(f"  raw redis-py XADD/XREADGROUP/XACK loop  {raw:10,.0f} req/s  (ceiling)")
            print(f"  same loop + RPCServer.handle per request {raw_rpc:10,.0f} req/s  ({raw_rpc / raw:.0%} of raw)")
            print(f"  kaiju StreamListener, RedisStream       {ours:10,.0f} req/s  ({ours / raw:.0%} of raw)")
            print(f"  kaiju StreamListener, MemoryStream      {mem:10,.0f} req/s")
            key = "consume" if prefill else "e2e"
            for batch_handler, label in ((False, "per-message handler"), (True, "batch handler      ")):
                if batch_handler not in fs:
                    continue
                figures = fs[batch_handler]
                if isinstance(figures, str):
                    print(f"  FastStream {label}: {figures}")
                    continue
                peer = figures[key]
                ahead = f", kaiju {ours / peer:.1f}x" if peer else ""
                print(f"  FastStream StreamSub, {label}  {peer:10,.0f} req/s  ({peer / raw:.0%} of raw{ahead})")
    finally:
        server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
