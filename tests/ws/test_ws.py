"""JSON-RPC over WebSocket: calls, batches, headers, sessions bound to the socket, and stop."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest

from kaiju.testing import eventually
from tests.auth.support import PASSWORDS


async def post(app, method: str, params: dict | None = None, headers: dict | None = None):
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
    async with app.client.post(app.url, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as r:
        return r.headers, await r.json()


async def test_calls_answer_out_of_order_matched_by_id(connect):
    sock = await connect()
    slow = await sock.send("shop.sleep", {"seconds": 0.3})
    fast = await sock.send("shop.echo", {"data": [1, "a"]})
    first = await sock.read()
    assert first == {"jsonrpc": "2.0", "id": fast, "result": [1, "a"]}
    assert await sock.answer(slow) == {"jsonrpc": "2.0", "id": slow, "result": 0.3}


async def test_batches_notifications_and_errors(connect, app):
    sock = await connect()
    await sock.ws.send_str(
        '[{"jsonrpc":"2.0","id":"a","method":"shop.echo","params":{"data":1}},'
        '{"jsonrpc":"2.0","method":"shop.echo","params":{"data":2}},'
        '{"jsonrpc":"2.0","id":"b","method":"nope"}]'
    )
    answers = await sock.read()
    assert [a["id"] for a in answers] == ["a", "b"]
    assert answers[0]["result"] == 1 and answers[1]["error"]["data"]["type"] == "MethodNotFound"
    await sock.ws.send_str("{not json")
    assert (await sock.read())["error"]["code"] == -32700
    assert (await sock.call("shop.mine"))["error"]["data"]["type"] == "MethodNotFound"  # a guest's


async def test_the_call_sees_transport_ws_the_client_and_per_message_headers(connect):
    sock = await connect({"Correlation-Id": "upgrade-1"})
    seen = (await sock.call("shop.context"))["result"]
    assert seen["transport"] == "ws" and seen["client"] == "127.0.0.1" and seen["correlation_id"] == "upgrade-1"
    own = (await sock.call("shop.context", headers={"Correlation-Id": "msg-7"}))["result"]
    assert own["correlation_id"] == "msg-7"
    bad = await sock.call("shop.context", headers={"Timeout": 5})
    assert bad["error"]["data"]["type"] == "InvalidRequest" and "headers" in bad["error"]["message"]
    refused = await sock.call("shop.context", headers={"Timeout": "soon"})
    assert refused["error"]["data"]["type"] == "InvalidRequest"


async def test_the_message_sent_on_a_logins_answer_runs_as_the_new_session(connect, app):
    app.sessions.turns = 50  # the new session's load takes a while (Redis): the answer waits for it
    sock = await connect()
    login = await sock.call("auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    assert login["result"]["user_id"] == "alice"
    assert (await sock.call("shop.mine"))["result"] == "for alice"
    assert (await sock.call("auth.logout"))["result"] is True
    assert (await sock.call("shop.mine"))["error"]["data"]["type"] == "MethodNotFound"


async def test_login_over_the_socket_binds_it_and_logout_unbinds(connect, app):
    sock = await connect()
    login = await sock.call("auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    assert login["result"]["user_id"] == "alice"
    assert (await sock.call("shop.mine"))["result"] == "for alice"
    loads = app.sessions.loads
    for _ in range(5):
        assert (await sock.call("shop.mine"))["result"] == "for alice"
    assert app.sessions.loads == loads  # bound: no store round trip per message
    assert (await sock.call("shop.remember", {"value": 7}))["result"] == {"value": 7}
    stored = await app.sessions.load_session(login["result"]["session_id"])
    assert stored.data == {"value": 7}  # what a call changed is saved, as over HTTP
    assert (await sock.call("auth.logout"))["result"] is True
    assert (await sock.call("shop.mine"))["error"]["data"]["type"] == "MethodNotFound"


async def test_upgrade_with_a_session_and_a_logout_elsewhere_ends_its_rights_at_once(connect, app):
    headers, answer = await post(app, "auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    session_id = answer["result"]["session_id"]
    sock = await connect({"Session-Id": session_id})
    assert (await sock.call("shop.mine"))["result"] == "for alice"
    await post(app, "auth.logout", headers={"Session-Id": session_id})  # another connection, HTTP
    loads = app.sessions.loads
    assert (await sock.call("shop.mine"))["error"]["data"]["type"] == "MethodNotFound"
    assert (await sock.call("shop.context"))["result"]["scope"] == "guest"
    assert app.sessions.loads == loads  # the notice ended it: nothing was asked of the store


async def test_a_session_written_elsewhere_is_read_again_before_the_next_message(connect, app):
    sock = await connect()
    login = await sock.call("auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    session_id = login["result"]["session_id"]
    assert (await sock.call("shop.remember", {"value": 7}))["result"] == {"value": 7}
    _, answer = await post(app, "shop.remember", {"value": 8}, headers={"Session-Id": session_id})  # HTTP
    assert answer["result"] == {"value": 8}
    loads = app.sessions.loads
    assert (await sock.call("shop.data"))["result"] == {"value": 8}  # the write was announced: loaded again
    assert app.sessions.loads == loads + 1
    assert (await sock.call("shop.mine"))["result"] == "for alice"  # its rights stand


async def test_a_disabled_user_and_a_revoked_token_end_the_sockets_rights(connect, app):
    _, login = await post(app, "auth.login", {"username": "carol", "password": PASSWORDS["carol"]})
    by_session = await connect({"Session-Id": login["result"]["session_id"]})
    _, tokens = await post(app, "auth.token", {"username": "alice", "password": PASSWORDS["alice"]})
    bearer = f"Bearer {tokens['result']['access_token']}"
    by_token = await connect({"Authorization": bearer})
    assert (await by_session.call("shop.context"))["result"]["user"] == 3
    assert (await by_token.call("shop.mine"))["result"] == "for alice"

    del app.users.users["carol"]
    await app.auth.revoke_user("carol")
    assert (await by_session.call("shop.context"))["result"]["scope"] == "guest"

    await post(app, "auth.logout", headers={"Authorization": bearer})  # revokes the token's family
    assert (await by_token.call("shop.context"))["result"]["scope"] == "guest"


async def test_a_refused_authorization_refuses_the_upgrade(app):
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await app.client.ws_connect(app.ws_url, headers={"Authorization": "Bearer not-a-token"})
    assert err.value.status == 401


async def test_without_events_the_session_is_loaded_for_each_message(make_app):
    async with make_app(events=False) as app:
        _, login = await post(app, "auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
        ws = await app.client.ws_connect(app.ws_url, headers={"Session-Id": login["result"]["session_id"]})
        loads = app.sessions.loads
        for n in range(3):
            await ws.send_json({"jsonrpc": "2.0", "id": n, "method": "shop.mine"})
            assert (await ws.receive_json(timeout=10))["result"] == "for alice"
        assert app.sessions.loads == loads + 3
        await post(app, "auth.logout", headers={"Session-Id": login["result"]["session_id"]})
        await ws.send_json({"jsonrpc": "2.0", "id": 9, "method": "shop.mine"})
        assert (await ws.receive_json(timeout=10))["error"]["data"]["type"] == "MethodNotFound"
        await ws.close()


async def test_a_session_cookie_authenticates_the_upgrade(make_app):
    async with make_app(http={"session_cookie": True, "cookie_secure": False}) as app:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            body = msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 1, "method": "auth.login", "params": {"username": "alice", "password": PASSWORDS["alice"]}}
            )
            async with browser.post(app.url, data=body, headers={"Content-Type": "application/json"}) as r:
                assert (await r.json())["result"]["user_id"] == "alice"
            async with browser.ws_connect(app.ws_url) as ws:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.mine"})
                assert (await ws.receive_json(timeout=10))["result"] == "for alice"


async def test_stop_lets_calls_finish_then_closes_with_1001(make_app):
    async with make_app() as app:
        ws = await app.client.ws_connect(app.ws_url)
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.sleep", "params": {"seconds": 0.3}})
        await eventually(lambda: app.rpc.executor.inflight, what="the call to be running")
        stopping = asyncio.ensure_future(app.server.stop())
        assert (await ws.receive_json(timeout=10)) == {"jsonrpc": "2.0", "id": 1, "result": 0.3}
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
        await stopping


async def test_calls_past_the_grace_period_are_answered_request_timeout(make_app):
    async with make_app(http={"shutdown_timeout": 0.2}) as app:
        ws = await app.client.ws_connect(app.ws_url)
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "shop.hold"})
        await eventually(lambda: app.shop.running == 1, what="the call to be running")
        stopping = asyncio.ensure_future(app.server.stop())
        assert (await ws.receive_json(timeout=10))["error"]["data"]["type"] == "RequestTimeout"
        assert (await ws.receive(timeout=10)).data == 1001
        await stopping


async def test_the_explorer_page_is_self_contained(app):
    async with app.client.get(app.base + "/public/docs") as r:
        page = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page


async def test_the_explorer_page_is_off_in_prod_unless_set():
    from kaiju.http.server import HTTPServer
    from kaiju.runtime.service import App

    assert HTTPServer(app=App(env="prod")).docs_url_path is None
    assert HTTPServer(app=App(env="prod"), docs_path="/api").docs_url_path == "/api"
    assert HTTPServer(app=App(env="dev")).docs_url_path == "/public/docs"
