"""Every WebSocket limit against a hostile client: a slow reader, a flood of calls, huge
frames, a bad origin, binary frames, too many sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kaiju.testing import eventually


async def test_a_flood_of_calls_runs_at_most_max_calls_at_once(make_app):
    async with make_app(http={"ws_max_calls": 4}) as app:
        ws = await app.client.ws_connect(app.ws_url)
        for n in range(200):
            await ws.send_json({"jsonrpc": "2.0", "id": n, "method": "shop.hold"})
        await eventually(lambda: app.shop.running == 4, what="four calls inside")
        await asyncio.sleep(0.05)  # give a fifth the chance to start, which it must not take
        assert app.shop.running == 4
        app.shop.gate.set()
        ids = set()
        while len(ids) < 200:
            answer = await ws.receive_json(timeout=10)
            assert answer["result"] <= 4
            ids.add(answer["id"])
        assert app.shop.most == 4
        await ws.close()


async def test_a_huge_frame_closes_the_socket_with_1009(make_app):
    async with make_app(http={"ws_max_message": 4096}) as app:
        ws = await app.client.ws_connect(app.ws_url)
        await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"shop.echo","params":{"data":"' + "x" * 10000 + '"}}')
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
        # the server goes on serving others
        other = await app.client.ws_connect(app.ws_url)
        await other.send_json({"jsonrpc": "2.0", "id": 2, "method": "shop.echo", "params": {"data": 1}})
        assert (await other.receive_json(timeout=10))["result"] == 1
        await other.close()


async def test_a_binary_frame_closes_the_socket_with_1003(app):
    ws = await app.client.ws_connect(app.ws_url)
    await ws.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"shop.echo"}')
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1003


@pytest.mark.parametrize(
    "origin, status",
    [("https://evil.example", 403), ("null", 403), ("https://app.example.com", 101), (None, 101)],
)
async def test_the_origin_is_checked_against_the_allowed_ones(make_app, origin, status):
    async with make_app(http={"origins": ["https://app.example.com"]}) as app:
        headers = {"Origin": origin} if origin else {}
        if status == 101:
            ws = await app.client.ws_connect(app.ws_url, headers=headers)
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.echo", "params": {"data": 1}})
            assert (await ws.receive_json(timeout=10))["result"] == 1
            await ws.close()
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await app.client.ws_connect(app.ws_url, headers=headers)
            assert err.value.status == status


async def test_a_page_of_the_same_origin_may_connect(app):
    ws = await app.client.ws_connect(app.ws_url, headers={"Origin": app.base})
    await ws.close()


async def test_a_slow_reader_is_closed_with_1013_and_memory_stays_bounded(make_app):
    async with make_app(http={"ws_send_queue": 65536}) as app:
        ws = await app.client.ws_connect(app.ws_url)
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "rpc.subscribe", "params": {"topic": "news.*"}})
        assert (await ws.receive_json(timeout=10))["result"]["subscribed"] is True
        endpoint = app.server.serving.ws
        conn = next(iter(endpoint.connections))
        # the client reads no more: the socket's buffers fill, then the send queue
        for n in range(20000):
            await app.events.publish("news.flood", {"n": n, "pad": "x" * 16384})
            assert conn.queued <= 65536 + 20000
            if endpoint.slow_readers:
                break
            await asyncio.sleep(0)
        assert endpoint.slow_readers == 1
        await eventually(lambda: not endpoint.connections, what="the slow socket to be gone")
        # the closing handshake went out behind what the client did not read: aborting is allowed too
        await ws.close()


async def test_connections_share_the_http_cap(make_app):
    async with make_app(http={"max_connections": 2}) as app:
        first = await app.client.ws_connect(app.ws_url)
        second = await app.client.ws_connect(app.ws_url)
        async with aiohttp.ClientSession() as other:
            with pytest.raises((aiohttp.ClientError, ConnectionError)):
                third = await other.ws_connect(app.ws_url)
                await third.receive(timeout=10)
                raise ConnectionError("closed")
        for ws in (first, second):  # the two open ones were not shed
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.echo", "params": {"data": 1}})
            assert (await ws.receive_json(timeout=10))["result"] == 1
            await ws.close()


async def test_a_plain_get_at_ws_path_is_refused_with_json(app):
    async with app.client.get(app.ws_url.replace("ws://", "http://")) as r:
        assert r.status == 400 and (await r.json())["error"]["data"]["type"] == "HTTPBadRequest"
    async with app.client.post(app.ws_url.replace("ws://", "http://"), json={}) as r:
        assert r.status == 405


async def test_a_socket_that_does_not_answer_a_ping_is_dropped_and_one_that_does_stays(make_app):
    async with make_app(http={"ws_heartbeat": 1.0}) as app:
        mute = await app.client.ws_connect(app.ws_url, autoping=False)
        alive = await app.client.ws_connect(app.ws_url, autoping=False)
        ping = await alive.receive(timeout=10)
        assert ping.type is aiohttp.WSMsgType.PING
        await alive.pong(ping.data)
        assert (await mute.receive(timeout=10)).type is aiohttp.WSMsgType.PING
        dropped = await mute.receive(timeout=10)  # no answer: the server drops the socket
        assert dropped.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        await alive.ping(b"mine")
        await alive.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.echo", "params": {"data": 1}})
        heard = {}
        while len(heard) < 2:
            msg = await alive.receive(timeout=10)
            if msg.type is aiohttp.WSMsgType.PING:
                await alive.pong(msg.data)
            else:
                heard[msg.type] = msg.data
        assert bytes(heard[aiohttp.WSMsgType.PONG]) == b"mine"  # (a bytearray in older aiohttp)
        assert heard[aiohttp.WSMsgType.TEXT] == '{"jsonrpc":"2.0","id":1,"result":1}'
        await alive.close()
