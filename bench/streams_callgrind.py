"""Instructions per consumed stream message, counted by callgrind (steady on a busy machine).

    .venv/bin/python bench/streams_callgrind.py [--n1 2000] [--n2 12000] [--batch 100]
        [--variant kaiju raw raw_rpc] [--root CHECKOUT]

Starts its own redis-server. For each variant and each of `n1` and `n2` messages: a plain
process fills a fresh stream, then a second process, under `valgrind --tool=callgrind`,
consumes it (kaiju: RedisStream + StreamListener + RPCServer + an echo method, as in
bench/streams.py's consume-only shape). The difference of the two counts over `n2 - n1`
is the consuming's cost per message, start-up and shut-down cancelled out (and the
listener's timed upkeep left out). redis-server's
own work is not counted (it runs in its own process). Variants: `kaiju`, `raw` (the raw
redis-py XREADGROUP/XACK loop of bench/streams.py) and `raw_rpc` (that loop with
`RPCServer.handle` per message). `--root` imports kaiju from another checkout (to compare
a commit with another: `git archive <rev> | tar -x -C DIR`). `--keep` keeps the callgrind
files of the `n2` runs (for `callgrind_annotate`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()


def _import_root(root: str) -> None:
    """Import kaiju from `root`: its modules come from there from now on (bench/streams.py,
    imported for its Echo service, puts its own checkout first on sys.path)."""
    sys.path.insert(0, root)
    import kaiju

    if not Path(kaiju.__file__).resolve().is_relative_to(Path(root).resolve()):
        sys.exit(f"kaiju was imported from {kaiju.__file__}, not from {root}")


async def fill(url: str, topic: str, n: int, variant: str) -> None:
    """Write `n` echo requests: as kaiju's producer does, or as bench/streams.py's raw loop."""
    if variant != "kaiju":
        await fill_raw(url, topic, n)
        return
    from kaiju.redis import RedisConnection
    from kaiju.runtime.service import App
    from kaiju.streams.producer import StreamProducer
    from kaiju.streams.redis import RedisStream
    from kaiju.testing.services import started

    producer = StreamProducer()
    async with started(RedisConnection(url=url), RedisStream(), producer, app=App(name="bench", env="bench")):
        for start in range(0, n, 500):
            await asyncio.gather(
                *(producer.call("bench.echo", {"value": i}, topic=topic) for i in range(start, min(start + 500, n)))
            )


async def fill_raw(url: str, stream: str, n: int) -> None:
    import msgspec
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    encode = msgspec.json.encode
    async with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            body = encode({"jsonrpc": "2.0", "method": "bench.echo", "params": {"value": i}})
            pipe.xadd(stream, {"b": body, "h": b'{"Correlation-Id":"x"}'})
        await pipe.execute()
    await client.aclose()


async def consume_kaiju(url: str, topic: str, n: int, batch: int) -> None:
    sys.path.insert(0, str(_HERE.parent))
    from streams import Echo  # bench/streams.py's echo service

    from kaiju.redis import RedisConnection
    from kaiju.rpc.server import RPCServer
    from kaiju.runtime.service import App
    from kaiju.streams.listener import StreamListener
    from kaiju.streams.redis import RedisStream
    from kaiju.streams.service import Streams
    from kaiju.testing.services import started

    echo = Echo()
    echo.target = n
    # the upkeep's timed work (lock checks, claims, touches) is left out: under callgrind the
    # consuming takes fifty times as long, so that work would be counted fifty times over
    listener = StreamListener(topic=topic, batch_size=batch, block_ms=1000, lock_check_ms=3_600_000,
                              claim_idle_ms=3_600_000)
    app = App(name="bench", env="bench")
    async with started(RedisConnection(url=url), RedisStream(), Streams(), echo, RPCServer(), listener, app=app):
        await asyncio.wait_for(echo.done.wait(), 600)


async def consume_raw(url: str, stream: str, n: int, batch: int, dispatch: bool) -> None:
    sys.path.insert(0, str(_HERE.parent))
    import msgspec
    import redis.asyncio as aioredis
    from streams import _echo, echo_server

    client = aioredis.from_url(url)
    group = "g"
    await client.xgroup_create(stream, group, id="0")
    server = await echo_server(n) if dispatch else None
    decode = msgspec.json.decode
    done = 0
    while done < n:
        reply = await client.xreadgroup(group, "c", {stream: ">"}, count=batch, block=1000)
        ids = []
        for msg_id, fields in reply[0][1]:
            headers = decode(fields[b"h"])
            if server is not None:
                await server.handle(b'{"id":0,' + fields[b"b"][1:], headers, scope=0)  # as bench/streams.py
            else:
                request = decode(fields[b"b"])
                await _echo(request["params"]["value"])
            ids.append(msg_id)
        await client.xack(stream, group, *ids)
        done += len(ids)
    await client.aclose()
    if server is not None:
        await server.stop()


def _instructions(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def measure(args: argparse.Namespace, url: str, variant: str, n: int, workdir: Path) -> int:
    topic = f"cg{time.monotonic_ns()}"
    me = [sys.executable, str(_HERE), "--root", args.root]
    subprocess.run([*me, "--fill", variant, url, topic, str(n)], check=True)
    out = workdir / f"callgrind.{variant}.{n}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *me, "--consume", variant, url, topic, str(n),
         "--batch", str(args.batch)],
        check=True,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return _instructions(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n2", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--variant", nargs="+", default=["kaiju", "raw", "raw_rpc"])
    parser.add_argument("--root", default=str(_HERE.parents[1]), help="the checkout whose kaiju is measured")
    parser.add_argument("--keep", help="folder to keep the callgrind files in")
    parser.add_argument("--fill", nargs=4, metavar=("VARIANT", "URL", "TOPIC", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--consume", nargs=4, metavar=("VARIANT", "URL", "TOPIC", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _import_root(args.root)
    if args.fill:
        variant, url, topic, n = args.fill
        asyncio.run(fill(url, topic, int(n), variant))
        return
    if args.consume:
        variant, url, topic, n = args.consume
        run: Any = (
            consume_kaiju(url, topic, int(n), args.batch)
            if variant == "kaiju"
            else consume_raw(url, topic, int(n), args.batch, variant == "raw_rpc")
        )
        asyncio.run(run)
        return
    from kaiju.testing.redis import RedisServer

    server = RedisServer(persistent=False)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(args.keep or tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"kaiju from {args.root}, batch {args.batch}, python {sys.version.split()[0]}")
            for variant in args.variant:
                i1 = measure(args, server.url, variant, args.n1, workdir)
                i2 = measure(args, server.url, variant, args.n2, workdir)
                per = (i2 - i1) / (args.n2 - args.n1)
                print(f"  {variant:8} {per:12,.0f} instructions per message  ({args.n1}: {i1:,}, {args.n2}: {i2:,})")
    finally:
        server.cleanup()


if __name__ == "__main__":
    if not re.match(r"3\.1[1-9]", sys.version):
        sys.exit("python 3.11 or later")
    main()
