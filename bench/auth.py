"""What authentication costs over HTTP: a user method called with a Session-Id (sessions in
memory, then in Redis) and with a Bearer token, beside the same method called as a guest.

    .venv/bin/python bench/auth.py          (needs wrk: apt-get install -y wrk; redis-server)

Each app is a `kaiju-run` process serving `bench/auth.yml` on a free 127.0.0.1 port, loaded
by `wrk -t1 -c64 -d${DURATION}s` with shared/peers/rpc_echo.lua after a short warm-up; ROUNDS
rounds alternate the rows and the best round per row counts. The guest row calls
`echo.echo`, the others `echo.private` (the same body, permission `user`); each row's cost
is against its own app's guest row. Env: DURATION (s, 10), ROUNDS (3), CONNECTIONS (64),
KAIJU_PEERS (the peers folder).

The apps: memory (MemoryCache, Events), redis (RedisCache, RedisEvents: several processes'
set-up) and redis without events. With events, AuthService and CacheSessions remember the
callers they verified (docs/auth.rst, "Remembered callers"); without, every request reads its
session, or its token's family, from Redis, in shared pipelines (docs/redis.rst).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rpc_inproc import find_peers

from kaiju.auth.passwords import hash_password
from kaiju.testing import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PEERS = find_peers()
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
PASSWORD = "bench-password"
APPS = {"memory app": ("memory", True), "redis app": ("redis", True), "redis app, no events": ("redis", False)}
GOALS = {  # issue figures: what identifying the caller may cost over a guest call, in %
    "Bearer token (memory app)": 10,
    "Session-Id (memory app)": 15,
    "Session-Id (redis app)": 40,
    "Bearer token (redis app)": 25,
}


def rpc(port: int, method: str, params: dict, headers: dict | None = None) -> tuple[dict, dict]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/public/rpc", body, {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read()), dict(answer.headers)


class Server:
    """One kaiju-run process serving bench/auth.yml with the given cache backend."""

    def __init__(self, backend: str, events: bool, redis_url: str, user_hash: str):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
        args = [
            sys.executable, "-m", "kaiju", "-c", str(ROOT / "bench" / "auth.yml"), "--log-level", "WARNING",
            "-e", f"PORT={self.port}", "-e", f"REDIS={backend == 'redis'}",
            "-e", f"CACHE={'RedisCache' if backend == 'redis' else 'MemoryCache'}",
            "-e", f"EVENTS={'RedisEvents' if backend == 'redis' else 'Events'}", "-e", f"EVENTS_ON={events}",
            "-e", f"REDIS_URL={redis_url}",
            "-e", f"USER_HASH={user_hash}",
        ]
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc(self.port, "echo.echo", {"data": 1})
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kaiju-run did not come up: {self.proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(port: int, method: str, headers: dict[str, str], seconds: int) -> str:
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(PEERS / "rpc_echo.lua")]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{port}/public/rpc"], env={**os.environ, "RPC_METHOD": method},
        check=True, capture_output=True, text=True,
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("rps=")), "")
    if not line:
        raise RuntimeError(f"wrk printed no rps line: {out!r}")
    return line


def measure(server: Server, method: str, headers: dict[str, str]) -> str:
    wrk(server.port, method, headers, 2)  # warm-up
    line = wrk(server.port, method, headers, DURATION)
    bad = re.search(r"bad=(\d+)", line)
    if bad and int(bad[1]):
        raise RuntimeError(f"{method} {headers}: {line}: answers that were not results")
    return line


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    # aiomisc (under kaiju-run) runs uvloop when it is installed
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    user_hash = hash_password(PASSWORD)
    redis = RedisServer(persistent=False)
    redis.start()
    try:
        rows: dict[str, tuple[float, str]] = {}
        for _ in range(ROUNDS):
            for app, (backend, events) in APPS.items():
                server = Server(backend, events, redis.url, user_hash)
                try:
                    login, _ = rpc(server.port, "auth.login", {"username": "bench", "password": PASSWORD})
                    session = login["result"]["session_id"]
                    tokens, _ = rpc(server.port, "auth.token", {"username": "bench", "password": PASSWORD})
                    bearer = tokens["result"]["access_token"]
                    cases = {
                        f"guest ({app})": ("echo.echo", {}),
                        f"Session-Id ({app})": ("echo.private", {"Session-Id": session}),
                        f"Bearer token ({app})": ("echo.private", {"Authorization": f"Bearer {bearer}"}),
                    }
                    for name, (method, headers) in cases.items():
                        line = measure(server, method, headers)
                        rps = float(re.search(r"rps=(\d+)", line)[1])
                        if rps > rows.get(name, (0.0, ""))[0]:
                            rows[name] = (rps, line)
                finally:
                    server.stop()
    finally:
        redis.cleanup()
    print(f"auth over HTTP, {loop} event loop, wrk -t1 -c{CONNECTIONS} -d{DURATION}s, best of {ROUNDS} rounds")
    for name, (_, line) in rows.items():
        print(f"{name:<42} {line}")
    for app in APPS:
        guest = rows[f"guest ({app})"][0]
        for kind in ("Session-Id", "Bearer token"):
            name = f"{kind} ({app})"
            cost = 100 * (guest / rows[name][0] - 1)
            goal = GOALS.get(name)
            target = f" (target <= {goal}%)" if goal is not None else ""
            print(f"{name:<42} costs {cost:5.1f}% more per call than a guest call of its app{target}")


if __name__ == "__main__":
    main()
