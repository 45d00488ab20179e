"""Resident memory of the example app after start, after 100k and after 200k HTTP requests,
beside the kaiju-tools 2.4.26 peer app, measured in the same run.

    .venv/bin/python bench/memory.py          (needs wrk: apt-get install -y wrk)

kaiju: `kaiju-run -c conf/example.yml` (serving `demo.echo`); kaiju-tools: the peer app in
../shared/peers/kaiju_tools_app (`echo.echo`). Each on a free 127.0.0.1 port, one at a time,
loaded by wrk (-t1 -c64, shared/peers/rpc_echo.lua) until at least N and 2N requests were
answered; RSS is read from /proc/PID/status after each step (the first one a second after
the first answer, once what a start leaves to threads is done), and the peak (VmHWM) at the end. The growth between N and 2N
requests is the figure to watch (a leak grows it). Env: N (100000), KAIJU_PEERS.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rpc_inproc import find_peers
from startup import answered, stop

from kaiju.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
PEERS = find_peers()
N = int(os.environ.get("N", "100000"))
SETTLE = 1.0  # seconds between the first answer and the "after start" reading


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The resident memory of `pid` now (VmRSS), or its peak so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status)[1]) / 1024


def drive(port: int, method: str, count: int) -> int:
    """Send requests with wrk until at least `count` were answered; returns how many were."""
    done = 0
    while done < count:
        seconds = max(1, min(10, (count - done) // 8000 + 1))
        out = subprocess.run(
            ["wrk", "-t1", "-c64", f"-d{seconds}s", "-s", str(PEERS / "rpc_echo.lua"), f"http://127.0.0.1:{port}/public/rpc"],
            env={**os.environ, "RPC_METHOD": method}, check=True, capture_output=True, text=True,
        ).stdout
        found = re.search(r"(\d+) requests in", out)
        bad = re.search(r"bad=(\d+)", out)
        if not found or (bad and int(bad[1])):
            raise RuntimeError(f"wrk: {out!r}")
        done += int(found[1])
    return done


def measure(name: str, args: list[str], cwd: Path, method: str, port: int) -> list[str]:
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/public/rpc"
    body = b'{"jsonrpc":"2.0","id":1,"method":"' + method.encode() + b'","params":{"data":1}}'
    try:
        deadline = time.monotonic() + 60
        while not answered(url, body):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not come up: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        time.sleep(SETTLE)  # work a start leaves to threads (kaiju's dummy password hash) ends first
        started = rss_mb(proc.pid)
        first = drive(port, method, N)
        after_first = rss_mb(proc.pid)
        second = first + drive(port, method, N)
        after_second = rss_mb(proc.pid)
        peak = rss_mb(proc.pid, "VmHWM")
    finally:
        stop(proc)
    return [
        f"{name:<12} after start {started:6.1f} MB   after {first:>7,} requests {after_first:6.1f} MB   "
        f"after {second:>7,} {after_second:6.1f} MB   growth over the second {second - first:,}: "
        f"{after_second - after_first:+.1f} MB   peak {peak:6.1f} MB"
    ]


def main() -> None:
    peer_py = subprocess.run([str(PEERS / "setup.sh")], check=True, capture_output=True, text=True).stdout.strip()
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    lines = []
    port = free_port()
    lines += measure("kaiju", [sys.executable, "-m", "kaiju", "-c", "conf/example.yml", "--log-level", "WARNING",
                               "-e", f"PORT={port}"], ROOT, "demo.echo", port)
    port = free_port()
    lines += measure("kaiju-tools", [peer_py, "run.py", "-e", f"PEER_PORT={port}"], PEERS / "kaiju_tools_app", "echo.echo", port)
    print(f"resident memory (RSS), wrk -t1 -c64, kaiju on the {loop} event loop")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
