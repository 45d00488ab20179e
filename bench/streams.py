"""Requests per second through a stream topic: kaiju's listener beside a raw redis-py loop.

    .venv/bin/python bench/streams.py [--messages 20000] [--batch 100]

Starts its own redis-server (kaiju.testing.redis.RedisServer, no persistence). Every
variant does the same work per message: write a JSON-RPC request to a stream (one XADD
each, as a producer would), read it through a consumer group, decode it, run an echo
coroutine, acknowledge it. Two shapes are timed:

- end-to-end: a producer task writes while the consumer reads, until all are acknowledged;
- consume: the stream is filled first, then only the consuming is timed.

Variants: the raw redis-py XADD / XREADGROUP / XACK loop (the ceiling), kaiju's
StreamProducer + StreamListener + RPCServer on RedisStream, and on MemoryStream.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
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


async def raw_loop(url: str, n: int, batch: int, prefill: bool, dispatch: bool = False) -> float:
    """The ceiling: redis-py straight, no framework; with `dispatch`, each request also goes
    through `RPCServer.handle` (the least any listener on this dispatcher must spend)."""
    client = aioredis.from_url(url)
    server = None
    if dispatch:
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
    stream, group = f"raw.{time.monotonic_ns()}", "g"
    await client.xgroup_create(stream, group, id="0", mkstream=True)
    decode = msgspec.json.decode
    encode = msgspec.json.encode

    async def produce() -> None:
        for i in range(n):
            body = encode({"jsonrpc": "2.0", "method": "bench.echo", "params": {"value": i}})
            await client.xadd(stream, {"b": body, "h": b'{"Correlation-Id":"x"}'})

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


async def kaiju_loop(url: str | None, n: int, batch: int, prefill: bool) -> float:
    """kaiju: StreamProducer.call -> stream -> StreamListener -> RPCServer -> Echo.echo -> ack."""
    backend: list[Service] = [RedisConnection(url=url), RedisStream()] if url else [MemoryStream()]
    backend.append(Streams())  # the listener's service above the storage
    echo = Echo()
    echo.target = n
    producer = StreamProducer()
    listener = StreamListener(topic=f"t{time.monotonic_ns()}", batch_size=batch, block_ms=1000)
    app = App(name="bench", env="bench")

    async def produce() -> None:
        for i in range(n):
            await producer.call("bench.echo", {"value": i}, topic=listener.topic)

    if prefill:
        # fill before the listener starts, then time the consuming alone
        async with started(*backend, producer, app=app):
            await produce()
            listener.streams = backend[-1]
            async with started(echo, RPCServer(), listener, app=app):
                start = time.perf_counter()
                await asyncio.wait_for(echo.done.wait(), 300)
                elapsed = time.perf_counter() - start
    else:
        async with started(*backend, echo, RPCServer(), listener, producer, app=app):
            start = time.perf_counter()
            await asyncio.gather(produce(), asyncio.wait_for(echo.done.wait(), 300))
            elapsed = time.perf_counter() - start
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per figure")
    args = parser.parse_args()
    server = RedisServer(persistent=False)
    server.start()
    try:
        print(f"{args.messages} echo requests per round, batch {args.batch}, best of {args.rounds}; "
              f"redis-server on 127.0.0.1:{server.port}, python {sys.version.split()[0]}")
        for prefill in (False, True):
            shape = "consume only (pre-filled stream)" if prefill else "end-to-end (write + consume)"
            # the variants take turns, round after round, so that a change in the machine's load
            # (it is shared) falls on all of them alike
            best = {"raw": 0.0, "raw_rpc": 0.0, "ours": 0.0, "mem": 0.0}
            for _ in range(args.rounds):
                for name, run in (
                    ("raw", raw_loop(server.url, args.messages, args.batch, prefill)),
                    ("raw_rpc", raw_loop(server.url, args.messages, args.batch, prefill, True)),
                    ("ours", kaiju_loop(server.url, args.messages, args.batch, prefill)),
                    ("mem", kaiju_loop(None, args.messages, args.batch, prefill)),
                ):
                    best[name] = max(best[name], await run)
            raw, raw_rpc, ours, mem = best["raw"], best["raw_rpc"], best["ours"], best["mem"]
            print(f"\n{shape}")
            print(f"  raw redis-py XADD/XREADGROUP/XACK loop  {raw:10,.0f} req/s  (ceiling)")
            print(f"  same loop + RPCServer.handle per request {raw_rpc:10,.0f} req/s  ({raw_rpc / raw:.0%} of raw)")
            print(f"  kaiju StreamListener, RedisStream       {ours:10,.0f} req/s  ({ours / raw:.0%} of raw)")
            print(f"  kaiju StreamListener, MemoryStream      {mem:10,.0f} req/s")
    finally:
        server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
