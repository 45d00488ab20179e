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


async def ours(n: int, middleware: bool = False) -> float:
    rpc = RPCServer(middleware=[noop] if middleware else [])
    async with started(EchoService(), rpc):
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


def run_script(python: str, script: str, key: str, env: dict[str, str]) -> float:
    out = subprocess.run([python, str(PEERS / script)], check=True, capture_output=True, text=True, env={**os.environ, **env})
    found = re.search(rf"{key}=(\d+)", out.stdout)
    if not found:
        raise RuntimeError(f"{script} printed no {key}: {out.stdout!r} {out.stderr[-500:]!r}")
    return float(found[1])


def main() -> None:
    peer_py = peer_python()
    factory = loop_factory(choose_loop("asyncio"))
    probe = factory()
    loop = loop_name(probe)
    probe.close()
    peer_env = {"KAIJU_BENCH_INTERLEAVE": "1", **({"KAIJU_BENCH_UVLOOP": "1"} if loop == "uvloop" else {})}
    best = {"kaiju": 0.0, "kaiju+mw": 0.0, "kaiju-tools": 0.0, "pjrpc": 0.0, "ceiling": 0.0}
    for _ in range(ROUNDS):
        best["ceiling"] = max(best["ceiling"], run_script(sys.executable, "limit_inproc.py", "limit_inproc_rps", {"N": str(N)}))
        with asyncio.Runner(loop_factory=factory) as runner:
            best["kaiju"] = max(best["kaiju"], runner.run(ours(N)))
        with asyncio.Runner(loop_factory=factory) as runner:
            best["kaiju+mw"] = max(best["kaiju+mw"], runner.run(ours(N, middleware=True)))
        best["kaiju-tools"] = max(
            best["kaiju-tools"], run_script(peer_py, "kaiju_tools_inproc.py", "kaiju_inproc_rps", peer_env)
        )
        # pjrpc's dispatcher (the fastest Python JSON-RPC library's), driven the same way
        best["pjrpc"] = max(best["pjrpc"], run_script(peer_py, "pjrpc_inproc.py", "pjrpc_inproc_rps", {"N": str(N), "ROUNDS": "1"}))
    print(f"rpc in-process, {PARALLEL} interleaving callers, echo(data), best of {ROUNDS} rounds")
    print(f"loop: kaiju {loop}, kaiju-tools {loop}, ceiling asyncio (limit_inproc.py has no switch)")
    print(f"kaiju        {best['kaiju']:>10.0f} calls/s")
    print(f"kaiju+mw     {best['kaiju+mw']:>10.0f} calls/s   one no-op middleware costs {1 - best['kaiju+mw'] / best['kaiju']:.1%}")
    print(f"kaiju-tools  {best['kaiju-tools']:>10.0f} calls/s   kaiju/kaiju-tools = {best['kaiju'] / best['kaiju-tools']:.2f}x (target >= 2.3x)")
    print(f"pjrpc        {best['pjrpc']:>10.0f} calls/s   kaiju/pjrpc = {best['kaiju'] / best['pjrpc']:.2f}x (asyncio's loop)")
    print(f"ceiling      {best['ceiling']:>10.0f} calls/s   kaiju/ceiling = {best['kaiju'] / best['ceiling']:.0%} (target >= 60%)")


if __name__ == "__main__":
    main()
