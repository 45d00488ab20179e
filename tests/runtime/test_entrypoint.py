"""The entrypoint in-process: layered start, reverse stop, roll-back, optional services, timeouts."""

import pytest

from kaiju.rpc.access import Scope
from kaiju.rpc.methods import method
from kaiju.runtime.entrypoint import Entrypoint, StartupError
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
        {"cls": "Worker", "required": False}, {"cls": "Recorder", "name": "other"},
    ))
    async with ep:
        assert ep.left_out == {"cache", "worker"}
        assert set(ep.app.services) == {"db", "other"}
    assert "start worker" not in lines(events)
    assert sorted(lines(events)[-2:]) == ["stop db", "stop other"]


async def test_optional_failure_needed_by_a_required_service_fails_the_start(events):
    ep = make(config(events, "Database", {"cls": "Cache", "required": False, "settings": {"fail": True}}, "Worker"))
    with pytest.raises(StartupError, match='service "worker" failed to start: needs "cache", which failed to start'):
        async with ep:
            pass
    assert lines(events)[-1] == "stop db"


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
