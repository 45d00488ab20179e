"""Instructions per JSON-RPC call over WebSocket, counted by callgrind (no clock involved).

    .venv/bin/python bench/cg_ws.py            (N1=1000 N2=5000 CONNECTIONS=8 TARGETS=kaiju,ceiling)

Each server of bench/rpc_ws.py (kaiju's, bench/rpc_http_server.py, and the bare aiohttp
WebSocket echo, the ceiling) is run twice under `valgrind --tool=callgrind`, serving N1 and
then N2 calls of `echo.echo` spread over CONNECTIONS sockets (one request in flight each, the
client the same raw-socket one as rpc_ws.py's, outside valgrind). A run's count covers the
start, the calls and the stop; the difference of the two runs, divided by N2 - N1, is what
one call costs the server. Prints both and their ratio (the ceiling's count over kaiju's:
what rpc_ws.py's "ws / ceiling" would be if time were instructions). The callgrind files
are kept in CG_DIR (default /tmp/cg_ws) for `callgrind_annotate`.

The machine may be busy: instruction counts do not depend on it, wall-clock figures do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from rpc_ws import CALL, frame, ws_open, ws_read  # noqa: E402

N1 = int(os.environ.get("N1", 1000))
N2 = int(os.environ.get("N2", 5000))
CONNECTIONS = int(os.environ.get("CONNECTIONS", 8))
CG_DIR = Path(os.environ.get("CG_DIR", "/tmp/cg_ws"))
SERVERS = {
    "kaiju": [str(HERE / "rpc_http_server.py")],
    "ceiling": [str(HERE / "rpc_ws.py"), "ceiling"],
}


async def drive(port: int, calls: int) -> None:
    """`calls` calls over CONNECTIONS sockets, one in flight each; every answer is read."""
    message = frame(CALL)

    async def caller(n: int) -> None:
        reader, writer = await ws_open(port)
        for _ in range(n):
            writer.write(message)
            answer = await ws_read(reader)
            assert b'"result"' in answer, answer
        writer.close()

    share, extra = divmod(calls, CONNECTIONS)
    await asyncio.gather(*(caller(share + (i < extra)) for i in range(CONNECTIONS)))


def run(name: str, calls: int) -> int:
    """The server's instruction count (start, `calls` calls, stop) under callgrind."""
    from kaiju.testing import free_port

    port = free_port()
    out = CG_DIR / f"{name}.{calls}.out"
    env = {**os.environ, "PYTHONPATH": f"{HERE}:{ROOT}", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *SERVERS[name], str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("loop="):
            raise RuntimeError(f"{name}: the server did not start: {line!r}")
        asyncio.run(drive(port, calls))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(300)
    return totals(out)


def totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    CG_DIR.mkdir(parents=True, exist_ok=True)
    per_call = {}
    for name in os.environ.get("TARGETS", "kaiju,ceiling").split(","):
        low, high = run(name, N1), run(name, N2)
        per_call[name] = (high - low) / (N2 - N1)
        print(f"{name:8s} {per_call[name]:12,.0f} instructions per call  ({N1}: {low:,}; {N2}: {high:,})", flush=True)
    if {"kaiju", "ceiling"} <= per_call.keys():
        print(f"ceiling / kaiju: {per_call['ceiling'] / per_call['kaiju']:.0%} (rpc_ws.py's goal: >= 80%)")


if __name__ == "__main__":
    main()
