"""Subscriptions: who may subscribe to what, delivery by scope, once per socket and in order,
and fan-out across two real processes through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest

from kaiju.events.redis import RedisEvents
from kaiju.http.server import HTTPServer
from kaiju.redis import RedisConnection
from kaiju.rpc import RPCServer
from kaiju.runtime.service import App
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started
from tests.auth.support import PASSWORDS
from tests.ws.pubapp import Publisher

ROOT = Path(__file__).resolve().parents[2]


async def test_a_subscription_receives_matching_events_in_order(connect, app):
    sock = await connect()
    assert (await sock.call("rpc.subscribe", {"topic": "news.*"}))["result"]["subscribed"] is True
    for n in range(20):
        await app.app.publish("news.sport", {"n": n})
    await app.app.publish("weather.today", "rain")  # matches no subscription
    events = [await sock.event() for _ in range(20)]
    assert [e["params"]["n"] for e in events] == list(range(20))
    assert events[0] == {"jsonrpc": "2.0", "method": "news.sport", "params": {"n": 0}}


async def test_nothing_may_be_subscribed_unless_declared(connect):
    sock = await connect()
    for pattern in ("*", "weather.*", "orders.*", "news.secret.*"):  # undeclared, or above a guest's scope
        refused = await sock.call("rpc.subscribe", {"topic": pattern})
        assert refused["error"]["data"]["type"] == "PermissionDenied", pattern
    too_long = await sock.call("rpc.subscribe", {"topic": "n" * 257})
    assert too_long["error"]["data"]["type"] == "InvalidParams"


async def test_a_pattern_slipping_past_the_check_gets_only_what_its_scope_may(connect, app):
    sock = await connect()
    assert "result" in await sock.call("rpc.subscribe", {"topic": "news.*"})  # news.secret.* lies under it too
    await app.app.publish("news.secret.plans", "for admins")
    await app.app.publish("news.public", "for all")
    assert (await sock.event())["params"] == "for all"


async def test_overlapping_patterns_deliver_once(connect, app):
    sock = await connect()
    await sock.call("rpc.subscribe", {"topic": "news.*"})
    await sock.call("rpc.subscribe", {"topic": "news.sport"})
    await app.app.publish("news.sport", 1)
    await app.app.publish("news.other", 2)
    assert [(await sock.event())["params"] for _ in range(2)] == [1, 2]
    assert app.server.serving.ws.delivered == 2


async def test_unsubscribe_and_the_cap_on_subscriptions(make_app):
    async with make_app(http={"ws_max_subscriptions": 2}, rpc_settings={"topics": {"t.*": "guest"}}) as app:
        ws = await app.client.ws_connect(app.ws_url)
        answers = []
        for n, topic in enumerate(("t.1", "t.2", "t.3")):
            await ws.send_json({"jsonrpc": "2.0", "id": n, "method": "rpc.subscribe", "params": {"topic": topic}})
            answers.append(await ws.receive_json(timeout=10))
        assert "result" in answers[1] and answers[2]["error"]["data"]["type"] == "InvalidRequest"
        await ws.send_json({"jsonrpc": "2.0", "id": 9, "method": "rpc.unsubscribe", "params": {"topic": "t.1"}})
        assert (await ws.receive_json(timeout=10))["result"]["was_subscribed"] is True
        await app.app.publish("t.1", "gone")
        await app.app.publish("t.2", "kept")
        assert (await ws.receive_json(timeout=10))["params"] == "kept"
        await ws.close()


async def test_user_topics_follow_the_session(connect, app):
    sock = await connect()
    await sock.call("auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    assert "result" in await sock.call("rpc.subscribe", {"topic": "orders.*"})
    await app.app.publish("orders.1", "yours")
    assert (await sock.event())["params"] == "yours"
    await sock.call("auth.logout")
    await app.app.publish("orders.2", "not any more")
    await sock.call("rpc.subscribe", {"topic": "news.*"})
    await app.app.publish("news.after", "still news")
    assert (await sock.event())["params"] == "still news"


async def test_subscribing_over_http_is_an_invalid_request(app):
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "rpc.subscribe", "params": {"topic": "news.*"}})
    async with app.client.post(app.url, data=body, headers={"Content-Type": "application/json"}) as r:
        assert (await r.json())["error"]["data"]["type"] == "InvalidRequest"


async def test_discover_lists_the_topics_a_caller_may_subscribe_to(connect):
    sock = await connect()
    document = (await sock.call("rpc.discover"))["result"]
    assert document["x-topics"] == [{"pattern": "news.*", "scope": "guest"}]


CONFIG = """\
main: {{name: fanout, env: test}}
packages: [tests.ws.pubapp]
services:
  - cls: RedisConnection
    settings: {{url: "{redis_url}"}}
  - cls: RedisEvents
  - cls: Publisher
  - cls: RPCServer
    settings: {{topics: {{"news.*": guest}}}}
  - cls: HTTPServer
    settings: {{port: "[PORT]"}}
"""


@pytest.mark.redis
async def test_events_fan_out_across_two_processes_on_redis(tmp_path, redis_url):
    config = tmp_path / "app.yml"
    config.write_text(CONFIG.format(redis_url=redis_url))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaiju", "-c", str(config), "-e", f"PORT={port}", "--log-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    services = [
        RedisConnection(url=redis_url),
        RedisEvents(),
        Publisher(),
        RPCServer(topics={"news.*": "guest"}),
        HTTPServer(port=0),
    ]
    try:
        async with started(*services, app=App(name="fanout", env="test")), aiohttp.ClientSession() as http:
            here = services[-1].url.replace("http://", "ws://").replace("/public/rpc", "/public/ws")
            there = f"ws://127.0.0.1:{port}/public/ws"

            async def connected() -> bool:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    async with http.ws_connect(there):
                        return True
                except aiohttp.ClientError:
                    return False

            await eventually(connected, timeout=60, what="the other process serving")
            sockets = [await http.ws_connect(url) for url in (here, there)]
            for ws in sockets:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "rpc.subscribe", "params": {"topic": "news.*"}})
                assert (await ws.receive_json(timeout=10))["result"]["subscribed"] is True
            # published in the other process: heard here; published here: heard there
            await sockets[0].send_json(
                {"jsonrpc": "2.0", "method": "news.publish", "params": {"topic": "news.a", "data": 1}}
            )
            for ws in sockets:
                assert (await ws.receive_json(timeout=10)) == {"jsonrpc": "2.0", "method": "news.a", "params": 1}
            async with http.post(
                f"http://127.0.0.1:{port}/public/rpc",
                json={"jsonrpc": "2.0", "id": 2, "method": "news.publish", "params": {"topic": "news.b", "data": 2}},
            ) as r:
                assert (await r.json())["result"] is True
            for ws in sockets:
                assert (await ws.receive_json(timeout=10))["params"] == 2
                await ws.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.redis
async def test_redis_events_resync_listeners_after_the_channel_breaks(redis_server, redis_url):
    from kaiju.events.base import EventListener

    class Heard(EventListener):
        def __init__(self) -> None:
            self.events: list = []
            self.resyncs = 0

        def deliver(self, topic: str, notification: bytes) -> None:
            self.events.append(topic)

        def resync(self) -> None:
            self.resyncs += 1

    events = RedisEvents(reconnect_delay=0.05)
    heard = Heard()
    async with started(RedisConnection(url=redis_url, retries=0), events):
        events.add_listener(heard)
        await events.publish("a.1", None)
        await eventually(lambda: heard.events == ["a.1"], what="the first event")
        redis_server.restart()
        await eventually(lambda: heard.resyncs == 1, what="a resync after the break")
        await eventually(lambda: events.subscribed.is_set(), what="subscribed again")
        await events.publish("a.2", None)
        await eventually(lambda: heard.events == ["a.1", "a.2"], what="events after the break")


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
async def test_redis_events_reach_another_app_on_sentinel_and_cluster(redis_settings, mode):
    from kaiju.runtime.service import App
    from kaiju.testing import eventually
    from kaiju.testing.services import started

    heard: list[bytes] = []
    settings = redis_settings(mode)
    one, two = RedisEvents(), RedisEvents()
    two.hear = heard.append  # what the second app's listeners would be handed
    async with started(RedisConnection(**settings), one, app=App(name="shop", env="test")):
        async with started(RedisConnection(**settings), two, app=App(name="shop", env="test")):
            await eventually(two.subscribed.is_set, what="the second app to hear the channel")

            async def carried() -> bool:
                await one.carry(b"ping")  # pub/sub: repeat until the subscription is in place everywhere
                return b"ping" in heard

            await eventually(carried, what=f"an event to cross on {mode}")
