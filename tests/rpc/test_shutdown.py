"""Shutdown of a real `kaiju-run` process on a real SIGTERM: a call still running when the HTTP
server's grace period ends is answered with a JSON-RPC RequestTimeout before its connection
closes, and when the app's budget runs out every started service's stop still runs, in
reverse order."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

from kaiju.testing import eventually, free_port
from tests.runtime.test_cli import finish, kaiju, wait_for_line

PKG = "tests.rpc.shutdown_app"

JSON = {"Content-Type": "application/json"}


def config(
    tmp_path: Path, events: Path, port: int, *, budget: float, grace: float, stuck_delay: float, stuck_start: float = 0
) -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        f"main:\n  name: t\n  shutdown_timeout: {budget}\npackages: [{PKG}]\nservices:\n"
        f"  - cls: Journal\n    settings: {{events: '{events}'}}\n"
        f"  - cls: Slow\n    settings: {{events: '{events}'}}\n"
        f"  - cls: Stuck\n    settings: {{events: '{events}', stop_delay: {stuck_delay}, delay: {stuck_start}}}\n"
        f"  - cls: RPCServer\n"
        f"  - cls: HTTPServer\n    settings: {{port: {port}, shutdown_timeout: {grace}}}\n"
    )
    return path


def wait_for_port(port: int, proc, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}): {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} not listening within {timeout} s")


def call_in_background(port: int, body: dict) -> tuple[threading.Thread, dict]:
    """POST `body` from a thread; the outcome lands in the returned dict (`status`, `answer`
    or `error`)."""
    outcome: dict = {}

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/public/rpc", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            outcome["status"], outcome["answer"] = resp.status, json.loads(resp.read())
        except Exception as exc:  # the connection closed without an answer: what must not happen
            outcome["error"] = repr(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def lines(events: Path) -> list[str]:
    return events.read_text().splitlines()


def test_a_call_running_past_the_grace_period_is_answered_request_timeout(tmp_path):
    events, port = tmp_path / "events", free_port()
    proc = kaiju("-c", str(config(tmp_path, events, port, budget=30, grace=1, stuck_delay=0)))
    wait_for_port(port, proc)
    thread, outcome = call_in_background(port, {"jsonrpc": "2.0", "id": 42, "method": "slow.wait", "params": {"seconds": 60}})
    wait_for_line(events, "called slow", proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    thread.join(30)
    assert code == 0, err
    assert outcome.get("status") == 200, outcome
    answer = outcome["answer"]
    assert answer["id"] == 42 and answer["error"]["data"]["type"] == "RequestTimeout", answer
    assert err.count("grace period over") == 1, err
    assert lines(events)[-3:] == ["stop slow", "stop stuck", "stop journal"] or lines(events)[-3:] == [
        "stop stuck", "stop slow", "stop journal",
    ], lines(events)


def test_every_stop_runs_when_the_budget_runs_out(tmp_path):
    """`stuck` takes longer to stop than the whole budget: it is cut, and the layer below it
    (`journal`, whose stop would flush data) is still stopped, after it."""
    events, port = tmp_path / "events", free_port()
    proc = kaiju("-c", str(config(tmp_path, events, port, budget=2, grace=1, stuck_delay=60)))
    wait_for_port(port, proc)
    thread, outcome = call_in_background(port, {"jsonrpc": "2.0", "id": 1, "method": "slow.wait", "params": {"seconds": 0}})
    thread.join(30)  # answered only once the app has started (requests wait for App.started)
    assert outcome.get("answer", {}).get("result") == 0, outcome
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    seen = lines(events)
    assert "stop journal" in seen and "stop slow" in seen, seen
    assert "stop stuck" not in seen  # cut at the end of the budget
    assert seen.index("stop slow") < seen.index("stop journal")
    assert "cancelled the stop of: stuck" in err, err


def test_a_start_up_interrupted_by_sigterm_rolls_back_within_the_budget(tmp_path):
    """SIGTERM while `stuck` is still starting: its start is cancelled, and its stop (which
    outlasts any budget) runs in the roll-back, cut at the end of the budget like any other,
    so the process still exits and the layer below is still stopped."""
    events, port = tmp_path / "events", free_port()
    proc = kaiju("-c", str(config(tmp_path, events, port, budget=2, grace=1, stuck_delay=60, stuck_start=60)))
    wait_for_line(events, "start stuck", proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    assert "start-up interrupted by SIGTERM" in err and "cancelled the stop of: stuck" in err, err
    seen = lines(events)
    assert "stop journal" in seen and seen.index("stop slow") < seen.index("stop journal"), seen


# -- in-process: the end of the HTTP grace period, for a request and for a batch ---------------


async def test_stop_answers_requests_past_the_grace_period_with_request_timeout():
    import asyncio

    import aiohttp

    from kaiju.http.server import HTTPServer
    from kaiju.rpc import RPCServer, Scope, method
    from kaiju.runtime.service import Service
    from kaiju.testing.services import started

    class Sleeper(Service):
        service_name = "sleeper"

        async def start(self) -> None:
            self.inside = 0

        @method(permission=Scope.GUEST)
        async def sleep(self, seconds: float) -> float:
            self.inside += 1
            await asyncio.sleep(seconds)
            return seconds

    sleeper, http = Sleeper(), HTTPServer(port=free_port(), shutdown_timeout=0.2)
    one = b'{"jsonrpc":"2.0","id":7,"method":"sleeper.sleep","params":[60]}'
    batch = b'[{"jsonrpc":"2.0","id":8,"method":"sleeper.sleep","params":[60]}]'
    async with aiohttp.ClientSession() as session:
        async with started(sleeper, RPCServer(), http):
            calls = [asyncio.ensure_future(session.post(http.url, data=body, headers=JSON)) for body in (one, batch)]
            await eventually(lambda: sleeper.inside == 2, timeout=10, what="the two calls in the method")
            await http.stop()  # the grace period ends with both still running
            answers = [await (await call).json() for call in calls]
    assert answers[0]["id"] == 7 and answers[0]["error"]["data"]["type"] == "RequestTimeout", answers
    assert answers[1]["error"]["data"]["type"] == "RequestTimeout", answers


async def test_a_request_still_in_its_session_lookup_past_the_grace_period_is_answered():
    import asyncio

    import aiohttp

    from kaiju.http.server import HTTPServer
    from kaiju.rpc import RPCServer, Scope, method
    from kaiju.rpc.sessions import SessionStore
    from kaiju.runtime.service import Service
    from kaiju.testing.services import started

    class StuckStore(SessionStore):
        service_name = "sessions"

        async def start(self) -> None:
            self.inside = 0

        async def load_session(self, session_id: str) -> None:
            self.inside += 1
            await asyncio.sleep(60)

    class Hello(Service):
        service_name = "hello"

        async def start(self) -> None:
            pass

        @method(permission=Scope.GUEST)
        async def hi(self) -> str:
            return "hi"

    store, http = StuckStore(), HTTPServer(port=free_port(), shutdown_timeout=0.2)
    body = b'{"jsonrpc":"2.0","id":7,"method":"hello.hi"}'
    async with aiohttp.ClientSession() as session:
        async with started(store, Hello(), RPCServer(), http):
            call = asyncio.ensure_future(session.post(http.url, data=body, headers={"Session-Id": "s1", **JSON}))
            await eventually(lambda: store.inside == 1, timeout=10, what="the call in the session store")
            await http.stop()  # the grace period ends with the lookup still waiting
            answer = await (await call).json()
    assert answer["id"] == 7 and answer["error"]["data"]["type"] == "RequestTimeout", answer
