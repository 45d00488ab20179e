"""Liveness and readiness: the health checks of services, over HTTP, RPC and `kaiju-run health`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from kaiju.health import AppHealth, HealthCheck
from kaiju.http import route
from kaiju.http.server import HTTPServer
from kaiju.redis import RedisConnection
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import App, Service
from kaiju.testing import RedisServer, free_port
from kaiju.testing.services import started

ROOT = Path(__file__).resolve().parents[1]


async def eventually(predicate, timeout: float = 30.0, what: str = "the condition"):
    """Await `predicate()` until it is true; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come true within {timeout} s")
        await asyncio.sleep(0.05)


class Probe(Service):
    """A service whose health check counts its calls and fails or hangs when told to."""

    service_name = "probe"
    problem: str | None = None
    hang: bool = False

    async def start(self) -> None:
        self.calls = 0

    async def health(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.problem:
            raise RuntimeError(self.problem)


class SlowStop(Service):
    """Stops only once the file `release` exists; serves a route. Needs HTTP, so it stops first."""

    service_name = "slow"
    http: HTTPServer
    release: str

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self, exception: Exception | None = None) -> None:
        while not os.path.exists(self.release):
            await asyncio.sleep(0.02)

    @route("GET", "/slow")
    async def slow(self, request):
        return "served"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def get_json(session, url):
    async with session.get(url) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


def probes(http: HTTPServer) -> tuple[str, str]:
    base = f"http://127.0.0.1:{http.socket.getsockname()[1]}"
    return base + "/health/live", base + "/health/ready"


def ops_probes(http: HTTPServer) -> tuple[str, str]:
    return http.ops_url + "/health/live", http.ops_url + "/health/ready"


async def test_live_and_ready(session):
    http = HTTPServer(port=free_port())
    async with started(Probe(), RPCServer(), http):
        live, ready = probes(http)
        assert await get_json(session, live) == (200, {"live": True})
        assert await get_json(session, ready) == (200, {"ready": True, "state": "running", "failing": []})


async def test_a_failing_check_is_503_naming_the_service_but_not_why(session):
    http = HTTPServer(port=free_port())
    async with started(Probe(problem="disk full"), RPCServer(), http):
        status, body = await get_json(session, probes(http)[1])
    assert status == 503
    # anyone may ask this probe: the reason (an address, a path, a version) is for operators
    assert body == {"ready": False, "state": "running", "failing": ["probe"]}


async def test_the_ops_listener_serves_the_probes_with_reasons_and_alone(session):
    http = HTTPServer(port=free_port(), ops_port=free_port())
    async with started(Probe(problem="disk full"), RPCServer(), http):
        live, ready = ops_probes(http)
        assert await get_json(session, live) == (200, {"live": True})
        status, body = await get_json(session, ready)
        assert status == 503 and body == {"ready": False, "state": "running", "failing": {"probe": "RuntimeError: disk full"}}
        for url in probes(http):  # no longer on the public listener
            assert (await get_json(session, url))[0] == 404
        status, body = await get_json(session, http.ops_url + "/public/rpc")  # and the ops one serves nothing else
        assert status == 404 and body["error"]["code"] == -32601


async def test_credentials_in_a_failure_are_masked_in_the_report(session):
    http = HTTPServer(port=free_port(), ops_port=free_port())
    problem = "cannot reach redis://:hunter2@db:6379/0 with password=hunter2"
    async with started(Probe(problem=problem), RPCServer(), http):
        status, body = await get_json(session, ops_probes(http)[1])
    assert status == 503 and "hunter2" not in str(body)
    assert body["failing"]["probe"] == "RuntimeError: cannot reach redis://:***@db:6379/0 with password=***"


async def test_a_hanging_check_fails_at_its_timeout():
    app = App()
    app.services["probe"] = probe = Probe(hang=True, app=app)
    await probe.start()
    report = await HealthCheck(app, timeout=0.05, cache_seconds=0).report()
    assert not report.ready and report.failing == {"probe": "no answer within 0.05 s"}


async def test_a_probe_storm_runs_the_checks_once(session):
    probe = Probe()
    http = HTTPServer(port=free_port())
    async with started(probe, RPCServer(), AppHealth(cache_seconds=60), http):
        answers = await asyncio.gather(*(get_json(session, probes(http)[1]) for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    assert probe.calls == 1


async def test_not_ready_before_the_start_and_while_stopping():
    app = App()
    app.managed = True
    check = HealthCheck(app, cache_seconds=0)
    assert (await check.report()).state == "starting"
    app.started.set()
    assert (await check.report()).ready
    app.stopping = True
    assert msgspec.to_builtins(await check.report()) == {"ready": False, "state": "stopping", "failing": {}}


async def test_app_health_rpc_guest_sees_names_system_sees_why(session):
    rpc = RPCServer()
    http = HTTPServer(port=free_port())
    async with started(Probe(problem="disk full"), rpc, http):
        async with session.post(http.url, json={"jsonrpc": "2.0", "id": 1, "method": "app.health"}) as resp:
            assert (await resp.json())["result"] == {"ready": False, "state": "running", "failing": ["probe"]}
        details = await rpc.call("app.health", scope=Scope.SYSTEM)
        assert details["failing"] == {"probe": "RuntimeError: disk full"}
    assert "app.health" not in rpc.table.methods  # gone with the server that added it


async def test_readiness_follows_redis_going_away_and_coming_back(session):
    server = RedisServer(port=free_port(), persistent=False)
    server.start()
    try:
        http = HTTPServer(port=free_port())
        redis = RedisConnection(url=server.url, retries=0, connect_timeout=0.5, socket_timeout=0.5)
        async with started(redis, RPCServer(), AppHealth(cache_seconds=0, timeout=2.0), http):
            ready = probes(http)[1]

            async def status_is(expected):
                status, body = await get_json(session, ready)
                return status == expected and (expected == 200 or "redis" in body["failing"])

            assert (await get_json(session, ready))[0] == 200
            server.stop()
            await eventually(lambda: status_is(503), what="readiness 503 without Redis")
            server.start()
            await eventually(lambda: status_is(200), what="readiness 200 with Redis back")
    finally:
        server.cleanup()


def kaiju_run(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kaiju", *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def health_command(cfg: Path) -> tuple[int, str]:
    proc = kaiju_run("-c", str(cfg), "health")
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


async def test_shutdown_turns_readiness_503_first_and_kaiju_run_health_reports(tmp_path, session):
    port = free_port()
    release = tmp_path / "release"
    cfg = tmp_path / "app.yml"
    cfg.write_text(
        "main: {name: t}\nservices:\n  - cls: RPCServer\n"
        f"  - cls: HTTPServer\n    settings: {{port: {port}}}\n"
        f"  - cls: tests.test_health:SlowStop\n    settings: {{release: {str(release)!r}}}\n"
    )
    ready, slow = f"http://127.0.0.1:{port}/health/ready", f"http://127.0.0.1:{port}/slow"
    app = kaiju_run("-c", str(cfg), "--log-format", "plain")
    try:
        async def answers(expected):
            try:
                return (await get_json(session, ready))[0] == expected
            except aiohttp.ClientError:
                return False

        await eventually(lambda: answers(200), what="the app ready")
        code, out = await asyncio.to_thread(health_command, cfg)
        assert code == 0 and msgspec.json.decode(out) == {"ready": True, "state": "running", "failing": []}
        assert (await get_json(session, slow)) == (200, "served")

        app.send_signal(signal.SIGTERM)
        await eventually(lambda: answers(503), what="readiness 503 once the stop began")
        assert (await get_json(session, ready))[1]["state"] == "stopping"
        status, body = await get_json(session, slow)  # its service is stopping: not served
        assert status == 503 and body["error"]["data"]["status"] == 503
        code, out = await asyncio.to_thread(health_command, cfg)
        assert code == 1 and '"state":"stopping"' in out

        release.touch()
        assert await asyncio.to_thread(app.wait, 30) == 0
        code, out = await asyncio.to_thread(health_command, cfg)
        assert code == 1 and "no answer from" in out
    finally:
        release.touch()
        if app.poll() is None:
            app.kill()
        app.communicate()


async def test_probes_answer_head(session):
    http = HTTPServer(port=free_port())
    async with started(Probe(problem="disk full"), RPCServer(), http):
        live, ready = probes(http)
        async with session.head(live) as resp:
            assert resp.status == 200
        async with session.head(ready) as resp:
            assert resp.status == 503


async def test_a_task_whose_run_ignores_cancelling_is_stuck():
    from kaiju.tasks.periodic import PeriodicTask

    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # ignores the timeout's cancel: the run outlives it

    task = PeriodicTask(name="stubborn", interval=0.01, timeout=0.05, call=stubborn)
    async with started(task) as app:
        check = HealthCheck(app, cache_seconds=0)

        async def stuck() -> bool:
            return "stubborn" in (await check.report()).failing

        await eventually(stuck, what="the stuck run reported")
        assert "a run has been going for" in (await check.report()).failing["stubborn"]
        release.set()
        await eventually(lambda: _not(stuck), what="healthy again once the run ended")


async def _not(predicate) -> bool:
    return not await predicate()


async def test_a_stream_listener_is_healthy_while_reading():
    from kaiju.streams.listener import StreamListener
    from kaiju.streams.memory import MemoryStream
    from kaiju.streams.service import Streams

    listener = StreamListener(block_ms=50)
    async with started(MemoryStream(), Streams(), RPCServer(), listener) as app:
        check = HealthCheck(app, cache_seconds=0)
        assert (await check.report()).ready
        await listener.stop()
        assert (await check.report()).failing == {listener.name: f"RuntimeError: not reading {listener.stream_key}"}


def test_kaiju_run_health_refuses_a_server_on_port_0():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", "conf/example.yml", "-e", "PORT=0", "health"],
        cwd=root, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "port 0" in result.stderr and "Traceback" not in result.stderr
