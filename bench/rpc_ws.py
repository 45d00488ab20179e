"""JSON-RPC over WebSocket, measured in one run, with the loop named.

    .venv/bin/python bench/rpc_ws.py            (DURATION=10 CONNECTIONS=64 SOCKETS=1000 ROUNDS=3)

Calls: calls per second of `echo.echo` over CONNECTIONS WebSockets against kaiju's server
(bench/rpc_http_server.py, which serves /public/ws too), the same method over as many HTTP
keep-alive connections to the same server, and a bare aiohttp WebSocket echo (the ceiling:
decode the request, encode the answer, nothing else), one request in flight per connection,
from one client process whose clients are raw sockets (pre-built, masked frames and
requests; answers counted, not decoded) so that the client is not what is measured. Best of
ROUNDS rounds each, servers alternating. Goal: WebSocket >= 2x kaiju's HTTP, >= 80% of the ceiling.

Push: notifications per second to SOCKETS subscribed sockets of one process (the server
publishes a burst; the clock stops when every socket has every event), and the latency from
`publish` in one process to receipt on a socket of another, through Redis pub/sub
(RedisEvents; a redis-server of its own), p50 and p99 over 2,000 events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

DURATION = float(os.environ.get("DURATION", 10))
CONNECTIONS = int(os.environ.get("CONNECTIONS", 64))
SOCKETS = int(os.environ.get("SOCKETS", 1000))
ROUNDS = int(os.environ.get("ROUNDS", 3))
CALL = b'{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"data":"hello"}}'
MASK = b"\x01\x02\x03\x04"


def frame(payload: bytes) -> bytes:
    """A masked client text frame (RFC 6455 5.2), made once and sent many times."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    head = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0xFE]) + size.to_bytes(2, "big")
    return head + MASK + masked


async def ws_open(port: int, path: str = "/public/ws") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def ws_read(reader: asyncio.StreamReader) -> bytes:
    """One server frame's payload (servers do not mask)."""
    b1, b2 = await reader.readexactly(2)
    size = b2 & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return await reader.readexactly(size)


async def ws_caller(port: int, stop: float, counts: list[int]) -> None:
    reader, writer = await ws_open(port)
    message = frame(CALL)
    n = 0
    while time.monotonic() < stop:
        writer.write(message)
        await ws_read(reader)
        n += 1
    counts.append(n)
    writer.close()


async def http_caller(port: int, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    request = (
        f"POST /public/rpc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(CALL)}\r\n\r\n"
    ).encode() + CALL
    n = 0
    while time.monotonic() < stop:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        n += 1
    counts.append(n)
    writer.close()


async def rate(caller, port: int) -> float:
    counts: list[int] = []
    await asyncio.gather(*(caller(port, time.monotonic() + 1.0, []) for _ in range(CONNECTIONS)))  # warm-up
    start = time.monotonic()
    await asyncio.gather(*(caller(port, start + DURATION, counts) for _ in range(CONNECTIONS)))
    return sum(counts) / (time.monotonic() - start)


def serve(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{HERE}:{ROOT}"},
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("loop="):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)


async def calls() -> None:
    from kaiju.testing import free_port

    best = {"kaiju ws": 0.0, "kaiju http": 0.0, "aiohttp ws (ceiling)": 0.0}
    loops = {}
    for _ in range(ROUNDS):
        port = free_port()
        proc = serve(str(HERE / "rpc_http_server.py"), str(port))
        loops["kaiju"] = "see server"
        best["kaiju ws"] = max(best["kaiju ws"], await rate(ws_caller, port))
        best["kaiju http"] = max(best["kaiju http"], await rate(http_caller, port))
        stop(proc)
        port = free_port()
        proc = serve(str(Path(__file__)), "ceiling", str(port))
        best["aiohttp ws (ceiling)"] = max(best["aiohttp ws (ceiling)"], await rate(ws_caller, port))
        stop(proc)
    ws, http, ceiling = best["kaiju ws"], best["kaiju http"], best["aiohttp ws (ceiling)"]
    print(f"calls/s over {CONNECTIONS} connections, one in flight each, best of {ROUNDS} x {DURATION:g} s:")
    for name, value in best.items():
        print(f"  {name:24s} {value:10.0f}")
    print(f"  ws / http: {ws / http:.2f}x (goal >= 2)   ws / ceiling: {ws / ceiling:.0%} (goal >= 80%)")


# -- servers -------------------------------------------------------------------------


async def ceiling(port: int) -> None:
    """A bare aiohttp WebSocket echo: decode the request, answer its params' data."""
    import msgspec
    from aiohttp import WSMsgType, web

    decode, encode = msgspec.json.decode, msgspec.json.encode

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                req = decode(msg.data)
                await ws.send_str(encode({"jsonrpc": "2.0", "id": req["id"], "result": req["params"]["data"]}).decode())
        return ws

    app = web.Application()
    app.router.add_get("/public/ws", handler)
    await serve_until_signal(app, port)


async def serve_until_signal(app, port: int) -> None:
    from aiohttp import web

    from kaiju.runtime.loop import loop_name

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, done.set)
    print(f"loop={loop_name()}", flush=True)
    await done.wait()
    await runner.cleanup()


async def push_server(port: int, redis_url: str = "") -> None:
    """kaiju's side of the push figures: `bench.burst(n)` publishes n events, `bench.stamp()` one
    carrying the time; Events, or RedisEvents when a Redis URL is given."""
    from echo_service import EchoService

    from kaiju.events.base import Events
    from kaiju.http.server import HTTPServer
    from kaiju.rpc import RPCServer, Scope, method
    from kaiju.runtime.loop import loop_name
    from kaiju.runtime.service import Service
    from kaiju.testing.services import started

    class Bench(Service):
        service_name = "bench"

        @method(permission=Scope.GUEST)
        async def burst(self, n: int) -> int:
            for i in range(n):
                await self.app.publish("bench.burst", i)
                if i % 16 == 15:
                    await asyncio.sleep(0)  # let the writers run, as a real publisher would
            return n

        @method(permission=Scope.GUEST)
        async def stamp(self) -> bool:
            await self.app.publish("bench.stamp", time.time())
            return True

    services: list = [EchoService(), Bench()]
    if redis_url:
        from kaiju.events.redis import RedisEvents
        from kaiju.redis import RedisConnection

        services += [RedisConnection(url=redis_url), RedisEvents()]
    else:
        services.append(Events())
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, done.set)
    rpc = RPCServer(topics={"bench.*": "guest"})
    http = HTTPServer(host="127.0.0.1", port=port, max_connections=SOCKETS + 100, ws_send_queue=8 << 20)
    async with started(*services, rpc, http):
        print(f"loop={loop_name()}", flush=True)
        await done.wait()


async def subscribed(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await ws_open(port)
    writer.write(frame(b'{"jsonrpc":"2.0","id":1,"method":"rpc.subscribe","params":{"topic":"bench.*"}}'))
    assert b"subscribed" in await ws_read(reader)
    return reader, writer


async def push() -> None:
    from kaiju.testing import RedisServer, free_port

    port = free_port()
    proc = serve(str(Path(__file__)), "push", str(port))
    try:
        sockets = [await subscribed(port) for _ in range(SOCKETS)]
        caller = await ws_open(port)
        burst = 200
        start = time.monotonic()
        caller[1].write(frame(b'{"jsonrpc":"2.0","id":2,"method":"bench.burst","params":{"n":%d}}' % burst))

        async def drain(reader: asyncio.StreamReader) -> None:
            for _ in range(burst):
                await ws_read(reader)

        await asyncio.gather(*(drain(r) for r, _ in sockets))
        elapsed = time.monotonic() - start
        print(f"push: {SOCKETS * burst / elapsed:,.0f} notifications/s to {SOCKETS} sockets of one process "
              f"({burst} events each, {elapsed:.2f} s)")
    finally:
        stop(proc)

    redis = RedisServer(persistent=False)
    redis.start()
    ports = [free_port(), free_port()]
    procs = [serve(str(Path(__file__)), "push", str(p), redis.url) for p in ports]
    try:
        reader, kept = await subscribed(ports[1])  # kept: a writer collected would close its socket
        _, writer = await ws_open(ports[0])
        latencies = []
        for _ in range(2000):
            writer.write(frame(b'{"jsonrpc":"2.0","method":"bench.stamp"}'))
            sent = json.loads(await ws_read(reader))["params"]
            latencies.append((time.time() - sent) * 1000)
        latencies.sort()
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
        print(f"push across processes (RedisEvents): publish -> receipt p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    finally:
        for p in procs:
            stop(p)
        redis.cleanup()


async def main() -> None:
    from kaiju.runtime.loop import loop_name

    print(f"client loop={loop_name()}; servers run on the loop kaiju-run would choose (KAIJU_LOOP, else uvloop)")
    await calls()
    await push()


if __name__ == "__main__":
    from kaiju.runtime.loop import choose_loop, loop_factory

    factory = loop_factory(choose_loop())
    with asyncio.Runner(loop_factory=factory) as runner:
        if sys.argv[1:2] == ["ceiling"]:
            runner.run(ceiling(int(sys.argv[2])))
        elif sys.argv[1:2] == ["push"]:
            runner.run(push_server(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""))
        else:
            runner.run(main())
