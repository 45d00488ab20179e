"""Time from starting `kaiju-run -c conf/example.yml` to ready, beside the kaiju-tools peer app.

bench/startup.yml, the peer app's services (RPC over HTTP and one service), is timed the same way.

    .venv/bin/python bench/startup.py [RUNS]        (default 5 runs each; prints medians)

kaiju: time from spawn to systemd's READY=1 (sent after the last layer started), and to
the first answered JSON-RPC request over HTTP; and from spawn to the exit of
`kaiju-run -c conf/example.yml check`. kaiju-tools 2.4.26 (../shared/peers, installed by its
setup.sh) has no notify support: time from spawn to its first answered request. Both run on a
free loopback port, one process at a time. kaiju's bytecode is compiled first, as an install
writes it (the peer's was, by pip), so neither pays for compiling its sources. The event loop
kaiju's server runs on (KAIJU_LOOP, main.event_loop, else uvloop when installed) is printed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from compileall import compile_dir
from pathlib import Path

from kaiju.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("KAIJU_PEERS", ROOT.parent / "shared" / "peers"))
SMALL = "bench/startup.yml"  # the services of the peer app: RPC over HTTP and one service
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "demo.echo", "params": {"data": 1}}).encode()


def answered(url: str, body: bytes) -> bool:
    try:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=0.5) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_http(url: str, body: bytes, proc: subprocess.Popen, began: float, limit: float = 30) -> float:
    while time.perf_counter() - began < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if answered(url, body):
            return time.perf_counter() - began
        time.sleep(0.005)
    raise RuntimeError(f"no answer from {url} in {limit}s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kaiju_once(config: str = "conf/example.yml") -> tuple[float, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": path}
        cmd = [str(ROOT / ".venv" / "bin" / "kaiju-run"), "-c", config, "-e", f"PORT={port}",
               "-e", "LOGLEVEL=WARNING"]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while sock.recv(64) != b"READY=1":
                pass
            ready = time.perf_counter() - began
            http = wait_http(f"http://127.0.0.1:{port}/public/rpc", BODY, proc, began)
        finally:
            stop(proc)
            sock.close()
    return ready, http


def check_once(config: str = "conf/example.yml") -> float:
    cmd = [str(ROOT / ".venv" / "bin" / "kaiju-run"), "-c", config, "check"]
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def server_loop() -> str:
    """The loop `kaiju-run -c conf/example.yml` runs on, as its entrypoint chooses it."""
    probe = (
        "from kaiju.config.loader import load_config\n"
        "from kaiju.runtime.loop import config_loop, loop_factory, loop_name\n"
        "loop = loop_factory(config_loop(load_config(['conf/example.yml'])))()\n"
        "print(loop_name(loop)); loop.close()"
    )
    python = str(ROOT / ".venv" / "bin" / "python")
    return subprocess.run([python, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def peer_once(python: str) -> float:
    port = free_port()
    body = json.dumps({"id": 1, "method": "echo.echo", "params": {"data": 1}}).encode()
    began = time.perf_counter()
    proc = subprocess.Popen(
        [python, "run.py", "-e", f"PEER_PORT={port}"], cwd=PEERS / "kaiju_tools_app",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        return wait_http(f"http://127.0.0.1:{port}/public/rpc", body, proc, began)
    finally:
        stop(proc)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    peer_python = subprocess.run([str(PEERS / "setup.sh")], capture_output=True, text=True, check=True).stdout.strip()
    compile_dir(str(ROOT / "kaiju"), quiet=1)
    loop = server_loop()
    med = statistics.median
    kaiju_runs, small_runs, check_runs, small_check_runs, peer_runs = [], [], [], [], []
    for _ in range(runs):  # one of each per round: a machine that slows down mid-run slows all alike
        kaiju_runs.append(kaiju_once())
        small_runs.append(kaiju_once(SMALL))
        check_runs.append(check_once())
        small_check_runs.append(check_once(SMALL))
        peer_runs.append(peer_once(peer_python))
    ready, http = med(r for r, _ in kaiju_runs) * 1000, med(h for _, h in kaiju_runs) * 1000
    small_ready, small_http = med(r for r, _ in small_runs) * 1000, med(h for _, h in small_runs) * 1000
    check, small_check = med(check_runs) * 1000, med(small_check_runs) * 1000
    peer = med(peer_runs) * 1000
    print(f"startup, median of {runs} runs (spawn -> ready), kaiju's server on {loop}:")
    print(f"  kaiju-run -c conf/example.yml   READY=1           {ready:7.1f} ms")
    print(f"  kaiju-run -c conf/example.yml   first HTTP answer {http:7.1f} ms")
    print(f"  kaiju-run -c {SMALL}    READY=1           {small_ready:7.1f} ms   (the peer's services)")
    print(f"  kaiju-run -c {SMALL}    first HTTP answer {small_http:7.1f} ms")
    print(f"  kaiju-tools 2.4.26 peer app     first HTTP answer {peer:7.1f} ms")
    print(f"  ratio peer/kaiju (first HTTP answer): {peer / http:.2f}x example, {peer / small_http:.2f}x {SMALL}"
          " (target >= 1.00x)")
    print(f"  kaiju-run -c conf/example.yml check (spawn -> exit) {check:5.1f} ms (target < 150 ms)")
    print(f"  kaiju-run -c {SMALL} check  (spawn -> exit) {small_check:5.1f} ms")


if __name__ == "__main__":
    main()
