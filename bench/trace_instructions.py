"""Instructions per JSON-RPC request over HTTP, untraced and traced, counted by callgrind.

    python3 bench/trace_instructions.py [plain trace:0.0 trace:0.1 trace:1.0]   (needs valgrind)

Where `bench/rpc_http.sh` measures requests per second (which a busy machine skews), this
counts the instructions a request costs, which do not depend on the machine's load: the
echo server of `bench/rpc_http_server.py` runs under `valgrind --tool=callgrind` (each
variant as `rpc_http.sh` starts it; traced ones export over OTLP/HTTP to
`bench/otlp_sink.py`), a client sends N1 then N2 sequential keep-alive requests, and the
difference of the two totals over N2 - N1 is the cost of one request, start-up and stop
cancelled out. `trace:0.0` samples every trace out: what a request that is not kept
costs. Env: N1 (300), N2 (1500), PYTHON (kaiju's python, default .venv/bin/python).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = os.environ.get("PYTHON", str(ROOT / ".venv/bin/python"))
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo.echo", "params": {"data": "hello"}})
HEADERS = {"Content-Type": "application/json"}
VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/public/rpc", BODY, HEADERS)
    answer = conn.getresponse().read()
    assert b'"result"' in answer, answer


def instructions(variant: str, sink: str, requests: int) -> int:
    """The instructions a server of `variant` ran, from its start to its stop, serving `requests`."""
    port = free_port()
    args = [] if variant == "plain" else [variant, sink]
    server = subprocess.Popen(
        [*VALGRIND, PYTHON, "rpc_http_server.py", str(port), *args],
        cwd=ROOT / "bench",
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while True:  # the server starts slowly under valgrind
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            post(conn)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"{variant}: the server did not start") from None
            time.sleep(0.2)
    for _ in range(requests):
        post(conn)
    time.sleep(2)  # the batch exporter sends what it holds (counted with the requests)
    server.send_signal(2)
    _, err = server.communicate(timeout=300)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"{variant}: no instruction count from callgrind:\n{err[-2000:]}")
    return int(found.group(1))


def main() -> None:
    variants = sys.argv[1:] or ["plain", "trace:0.0", "trace:0.1", "trace:1.0"]
    n1, n2 = int(os.environ.get("N1", 300)), int(os.environ.get("N2", 1500))
    sink_port = free_port()
    sink = subprocess.Popen([PYTHON, str(ROOT / "bench/otlp_sink.py"), str(sink_port)], stdout=subprocess.DEVNULL)
    base = None
    try:
        for variant in variants:
            url = f"http://127.0.0.1:{sink_port}/v1/traces"
            per = (instructions(variant, url, n2) - instructions(variant, url, n1)) / (n2 - n1)
            base = per if base is None else base
            print(f"{variant:10} {per:>12,.0f} instructions/request  ({per / base:.2f}x {variants[0]})", flush=True)
    finally:
        sink.terminate()


if __name__ == "__main__":
    main()
