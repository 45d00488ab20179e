"""The entrypoint in-process: layered start, reverse stop, roll-back, optional services, timeouts."""

import aiomisc
import aiomisc.service
import pytest

from kaiju.rpc.access import Scope
from kaiju.rpc.methods import method
from kaiju.runtime.entrypoint import Entrypoint, StartupError
from kaiju.runtime.plan import ServiceSpec
from tests.runtime.sample_services import Database, Recorder

PKG = "tests.runtime.sample_services"


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events"
    path.touch()
    return path


def config(events, *services):
    entries = []
    for entry in services:
        entry = {"cls": entry} if isinstance(entry, str) else dict(entry)
        entry["settings"] = {"events": str(events), **entry.get("settings", {})}
        entries.append(entry)
    return {"main": {"name": "t", "shutdown_timeout": 5}, "packages": [PKG], "services": entries}


def lines(events):
    return events.read_text().splitlines()


def make(cfg, *services):
    return Entrypoint(*services, config=cfg, catch_signals=(), log_config=False, os_env=False)


async def test_layers_start_in_order_and_stop_in_reverse(events):
    ep = make(config(events, "Api", "Cache", "Database"))
    assert not ep.app.started.is_set()
    async with ep:
        assert ep.state == "running" and ep.app.started.is_set()
        assert ep.startup_seconds is not None
    assert lines(events) == [
        "start db", "started db", "start cache", "started cache", "start api", "started api",
        "stop api", "stop cache", "stop db",
    ]
    assert ep.state == "stopped"


async def test_a_layer_starts_concurrently(events):
    slow = {"settings": {"delay": 0.2}}
    async with make(config(events, {"cls": "Database", "name": "a", **slow}, {"cls": "Database", "name": "b", **slow})):
        pass
    starts = lines(events)[:4]
    assert sorted(starts[:2]) == ["start a", "start b"] and sorted(starts[2:]) == ["started a", "started b"]


async def test_required_failure_rolls_back_in_reverse(events):
    ep = make(config(events, "Database", "Cache", {"cls": "Api", "settings": {"fail": True}}))
    with pytest.raises(StartupError, match='service "api" failed to start: RuntimeError: api was told to fail'):
        async with ep:
            pytest.fail("must not run")
    assert lines(events) == [
        "start db", "started db", "start cache", "started cache", "start api", "stop api", "stop cache", "stop db",
    ]


async def test_failure_inside_a_layer_stops_its_started_siblings(events):
    ep = make(config(
        events, {"cls": "Database", "name": "ok"}, {"cls": "Database", "name": "bad", "settings": {"fail": True, "delay": 0.1}},
    ))
    with pytest.raises(StartupError, match='"bad"'):
        async with ep:
            pass
    assert "stop ok" in lines(events) and "started bad" not in lines(events)


async def test_optional_failure_is_left_out_with_its_dependents(events):
    ep = make(config(
        events, "Database", {"cls": "Cache", "required": False, "settings": {"fail": True}},
        {"cls": "Api", "required": False}, {"cls": "Recorder", "name": "other"},
    ))
    async with ep:
        assert ep.left_out == {"cache", "api"}
        assert set(ep.app.services) == {"db", "other"}
    assert "start api" not in lines(events)
    assert sorted(lines(events)[-2:]) == ["stop db", "stop other"]


async def test_a_service_whose_optional_dependency_failed_starts_without_it(events):
    # Worker declares `cache: Cache | None`: it goes on without the optional cache, even required
    ep = make(config(events, "Database", {"cls": "Cache", "required": False, "settings": {"fail": True}}, "Worker"))
    async with ep:
        assert ep.left_out == {"cache"}
        assert ep.app.services["worker"].cache is None
    assert "started worker" in lines(events)


async def test_an_optional_service_a_required_one_needs_is_refused_before_the_start(events):
    from kaiju.config.errors import ConfigError

    # when it failed, the required one could not start either: a contradiction the plan sees
    with pytest.raises(ConfigError, match=r'services\[Cache\]\.required: expected true: the required service "api" needs "cache"'):
        make(config(events, "Database", {"cls": "Cache", "required": False, "settings": {"fail": True}}, "Api"))
    assert not events.exists() or lines(events) == []


async def test_start_timeout(events):
    ep = make(config(events, "Database", {"cls": "Cache", "start_timeout": 0.1, "settings": {"delay": 30}}))
    with pytest.raises(StartupError, match='"cache" failed to start: TimeoutError: did not start within 0.1 s'):
        async with ep:
            pass
    assert lines(events) == ["start db", "started db", "start cache", "stop cache", "stop db"]


async def test_failing_stop_does_not_keep_others_running(events):
    class BadStop(Recorder):
        async def stop(self, exception=None):
            raise RuntimeError("cannot stop")

    async with make(config(events, "Database"), BadStop(name="bad", events=str(events))):
        pass
    assert "stop db" in lines(events)


async def test_instances_mix_with_config_services(events):
    db = Database(events=str(events))
    async with make(config(events, "Cache"), db) as ep:
        assert ep.app.services["cache"].db is db
        assert ep.plan.layers == [["db"], ["cache"]]
    assert lines(events)[0] == "start db"


class BrokenWithMethod(Recorder):
    """An optional service whose start fails; its RPC method must not stay callable."""

    service_name = "broken"

    async def start(self):
        raise RuntimeError("cannot start")

    @method(permission=Scope.GUEST)
    async def ping(self) -> str:
        return "pong from a service that never started"


async def test_methods_of_a_left_out_service_are_not_callable(events):
    from kaiju.rpc.errors import MethodNotFound
    from kaiju.rpc.server import RPCServer

    cfg = config(events, "Database", {"cls": "tests.runtime.test_entrypoint:BrokenWithMethod", "required": False})
    cfg["services"].append({"cls": "RPCServer"})
    async with make(cfg) as ep:
        rpc = ep.app.services["rpc"]
        assert isinstance(rpc, RPCServer) and ep.left_out == {"broken"}
        with pytest.raises(MethodNotFound):
            await rpc.call("broken.ping")
        body, _ = await rpc.handle(b'{"jsonrpc": "2.0", "id": 1, "method": "broken.ping"}')
        assert b"-32601" in body


async def test_rpc_outside_a_kaiju_entrypoint_does_not_wait_for_app_started():
    import asyncio

    from kaiju.demo import DemoService
    from kaiju.rpc.server import RPCServer
    from kaiju.runtime.service import App

    app = App("plain")  # as under a plain aiomisc entrypoint: nobody sets app.started
    rpc, demo = RPCServer(app=app), DemoService(app=app)
    app.services.update(rpc=rpc, demo=demo)
    loop = asyncio.get_running_loop()
    for svc in (demo, rpc):
        svc.set_loop(loop)
        await svc.start()
    try:
        body, _ = await asyncio.wait_for(rpc.handle(b'{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":[5]}'), 5)
        assert body == b'{"jsonrpc":"2.0","id":1,"result":5}'
    finally:
        await rpc.stop()


async def test_cancelling_the_start_from_outside_rolls_back(events):
    import asyncio

    ep = make(config(events, "Database", {"cls": "Cache", "settings": {"delay": 30}}))
    entering = asyncio.ensure_future(ep.__aenter__())
    for _ in range(500):
        if "start cache" in lines(events):
            break
        await asyncio.sleep(0.01)
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    assert lines(events) == ["start db", "started db", "start cache", "stop cache", "stop db"]
    assert ep.state == "stopped"


# -- aiomisc's entrypoint signals: once per app ---------------------------------------------


@pytest.fixture
def aiomisc_receivers(events):
    """Receivers connected the way aiomisc documents: `@receiver(Entrypoint.PRE_START)`."""
    import aiomisc

    def make_receiver(what):
        async def receiver(entrypoint, services):
            names = sorted(getattr(s, "name", "?") for s in services)
            with open(events, "a") as f:
                f.write(f"{what} {','.join(names)}\n")

        return receiver

    connected = {}
    for what in ("PRE_START", "POST_START", "PRE_STOP", "POST_STOP"):
        connected[what] = aiomisc.receiver(getattr(aiomisc.Entrypoint, what))(make_receiver(what))
    yield
    for what, receiver in connected.items():
        getattr(aiomisc.Entrypoint, what).disconnect(receiver)


async def test_aiomisc_signals_fire_once_per_app(events, aiomisc_receivers):
    ep = make(config(events, "Api", "Cache", "Database"))
    seen = []

    async def on_stopped(entrypoint, services):  # a receiver of this entrypoint only
        seen.append((entrypoint, services))

    ep.post_stop.connect(on_stopped)
    async with ep:
        pass
    assert lines(events) == [
        "PRE_START api,cache,db",
        "start db", "started db", "start cache", "started cache", "start api", "started api",
        "POST_START api,cache,db",
        "PRE_STOP api,cache,db",
        "stop api", "stop cache", "stop db",
        "POST_STOP ",
    ]
    assert seen == [(ep, ())]


async def test_aiomisc_signals_on_a_failed_start(events, aiomisc_receivers):
    with pytest.raises(StartupError):
        async with make(config(events, "Database", {"cls": "Cache", "settings": {"fail": True}})):
            pass
    assert lines(events) == [
        "PRE_START cache,db", "start db", "started db", "start cache", "stop cache", "PRE_STOP db", "stop db", "POST_STOP ",
    ]


# -- plain aiomisc services --------------------------------------------------------------------


class PlainRecorder(aiomisc.Service):
    """A plain aiomisc service: no name, no app, no logger."""

    events: str
    fail: bool = False

    async def start(self) -> None:
        self.context["plain"] = "ready"  # aiomisc's Context works as under aiomisc's entrypoint
        with open(self.events, "a") as f:
            f.write("start plain\n")
        if self.fail:
            raise RuntimeError("plain was told to fail")

    async def stop(self, exception=None) -> None:
        with open(self.events, "a") as f:
            f.write("stop plain\n")


class Echo(aiomisc.service.TCPServer):
    async def handle_client(self, reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()


def with_plain(ep, name, service, required=True, after=True):
    """Add a plain aiomisc service to a plan, as the registry does for one named in config."""
    ep.plan.specs[name] = ServiceSpec(service=service, required=required)
    ep.plan.layers.append([name]) if after else ep.plan.layers.insert(0, [name])
    ep.app.services[name] = service


async def test_plain_aiomisc_services_start_and_stop_like_the_others(events):
    import asyncio

    from kaiju.testing import free_port

    port = free_port()
    ep = make(config(events, "Database"))
    with_plain(ep, "plain", PlainRecorder(events=str(events)))
    with_plain(ep, "echo", Echo(address="127.0.0.1", port=port))
    async with ep:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"hello\n"
        writer.close()
        assert {type(s).__name__ for s in ep.services} == {"Database", "PlainRecorder", "Echo"}
        assert await asyncio.wait_for(aiomisc.get_context()["plain"], 10) == "ready"
    assert lines(events) == ["start db", "started db", "start plain", "stop plain", "stop db"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_plain_aiomisc_service_failures_name_the_spec(events, caplog):
    ep = make(config(events, "Database"))
    with_plain(ep, "optional_plain", PlainRecorder(events=str(events), fail=True), required=False)
    async with ep:
        assert ep.left_out == {"optional_plain"}
    assert 'optional service "optional_plain" failed to start (RuntimeError: plain was told to fail)' in caplog.text
    ep = make(config(events, "Database"))
    with_plain(ep, "required_plain", PlainRecorder(events=str(events), fail=True))
    with pytest.raises(StartupError, match='service "required_plain" failed to start: RuntimeError: plain was told to fail'):
        async with ep:
            pass


# -- a failed start tells how to see its traceback ---------------------------------------------


def kaiju_run(tmp_path, events, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "app.yml"
    cfg.write_text(
        f"main: {{name: t}}\npackages: [{PKG}]\nservices:\n"
        f"  - cls: Database\n    settings: {{events: {str(events)!r}, fail: true}}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", str(cfg), "--log-format", "plain", *args],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60,
    )


def test_failed_start_at_debug_logs_the_traceback(tmp_path, events):
    result = kaiju_run(tmp_path, events, "--log-level", "DEBUG")
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert 'in start\n    raise RuntimeError(f"{self.name} was told to fail")' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == 'kaiju-run: service "db" failed to start: RuntimeError: db was told to fail'


def test_failed_start_above_debug_hints_at_the_traceback(tmp_path, events):
    result = kaiju_run(tmp_path, events)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert 'service "db" failed to start; rerun with --log-level DEBUG to see the traceback' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == 'kaiju-run: service "db" failed to start: RuntimeError: db was told to fail'
