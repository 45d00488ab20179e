"""TestApp and the kaiju_app fixture: an app from its config files, in the test's loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaiju import rpc
from kaiju.cache.memory import MemoryCache
from kaiju.demo import DemoService
from kaiju.locks.memory import MemoryLocks
from kaiju.rpc import Scope
from kaiju.streams.memory import MemoryStream
from kaiju.testing import TestApp, eventually

CONF = Path(__file__).resolve().parents[2] / "conf"


class FakeDemo(DemoService):
    """A test double for the example's demo service."""

    @rpc.method(permission=Scope.GUEST)
    async def hello(self, name: str = "world") -> str:
        return f"fake {name}"


@pytest.fixture
def kaiju_config() -> list[str]:
    return [str(CONF / "example.yml")]


async def test_the_fixture_runs_the_app_from_its_config(kaiju_app):
    assert await kaiju_app.call("demo.hello", {"name": "test"}) == "hello, test"
    with pytest.raises(rpc.MethodNotFound):
        await kaiju_app.call("demo.tick", scope="guest")  # system only
    async with kaiju_app.http() as client:
        answer = await client.post("/public/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "demo.echo", "params": [5]})
        assert (await answer.json())["result"] == 5
    assert kaiju_app.url.startswith("http://127.0.0.1:") and not kaiju_app.url.startswith("http://127.0.0.1:8080/")


async def test_fire_runs_a_task_now_and_returns_its_result():
    # off their schedules, the tasks run only when fired: the wall clock's position (the
    # example's cron fires at every 10-second boundary) cannot add a tick between two fires
    off = {"enabled": False}
    async with TestApp(CONF / "example.yml", settings={"demo_periodic": off, "demo_cron": off}) as app:
        assert await app.fire("demo_periodic") == 1
        assert await app.fire("demo_cron") == 2
        assert await app.call("demo.stats") == {"calls": 0, "ticks": 2}
        assert app.service("demo_periodic").runs == app.service("demo_cron").runs == 1


async def test_settings_and_env_are_laid_over_the_config():
    async with TestApp(CONF / "example.yml", settings={"demo": {"greeting": "hi"}}) as app:
        assert await app.call("demo.hello") == "hi, world"
    async with TestApp(CONF / "example.yml", env={"GREETING": "hey"}) as app:
        assert await app.call("demo.hello") == "hey, world"
    with pytest.raises(KeyError, match="nosuch"):
        TestApp(CONF / "example.yml", settings={"nosuch": {"x": 1}})


async def test_replace_puts_a_test_double_in_place_of_a_service():
    async with TestApp(CONF / "example.yml", replace={"demo": FakeDemo()}) as app:
        assert await app.call("demo.hello", {"name": "x"}) == "fake x"
        assert isinstance(app.service("demo"), FakeDemo)


async def test_redis_services_run_on_memory_unless_asked(redis_url):
    async with TestApp(CONF / "redis.yml") as app:
        assert isinstance(app.service("cache"), MemoryCache)
        assert isinstance(app.service("locks"), MemoryLocks)
        assert isinstance(app.service("stream_backend"), MemoryStream)
        assert "redis" not in app.app.services
        assert (await app.call("rpc.status"))["app"] == "redis-example"
    async with TestApp(CONF / "redis.yml", redis=redis_url) as app:
        from kaiju.cache.redis import RedisCache

        cache = app.service("cache")
        assert isinstance(cache, RedisCache)
        await cache.set("k", 1)
        assert await cache.get("k") == 1


async def test_travel_runs_a_cron_schedule_without_waiting(tmp_path):
    import datetime
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    config = {
        "main": {"name": "nightly"},
        "services": [
            {"cls": "kaiju.demo:DemoService"},
            {"cls": "RPCServer"},
            {"cls": "CronTask", "name": "night", "settings": {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "method": "demo.tick"}},
        ],
    }
    async with TestApp(config) as app:
        night = app.service("night")
        assert night.runs == 0
        app.travel(datetime.datetime(2030, 3, 1, 2, 59, 59, 700000, tzinfo=berlin))
        await eventually(lambda: night.runs, what="the 03:00 fire, 0.3 s away on the moved clock")
        assert night.runs == 1 and night.last_result == 1
        fired = datetime.datetime.fromtimestamp(night.last_fire, berlin)
        assert (fired.hour, fired.minute, fired.second) == (3, 0, 0)
        assert night.status()["next_run"].startswith("2030-03-02T02:00:00")  # 03:00 Berlin, in UTC


async def test_the_kaiju_spans_fixture_records_what_the_app_traced(kaiju_app, kaiju_spans):
    async with kaiju_app.http() as client:
        answer = await client.post("/public/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "demo.echo", "params": [5]})
        assert (await answer.json())["result"] == 5
    echo = kaiju_spans.one("demo.echo")
    assert kaiju_spans.parent_of(echo).name == "POST /public/rpc"
    assert kaiju_app.spans("demo.echo") == [echo]


async def test_an_app_without_spans_has_none_to_show():
    async with TestApp(CONF / "example.yml") as app:
        with pytest.raises(RuntimeError, match="spans=True"):
            app.spans()
