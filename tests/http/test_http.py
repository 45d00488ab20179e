"""HTTPServer on a real port, and the clients against it."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import msgspec
import pytest

from kaiju import rpc
from kaiju.http.client import HTTPClient, HTTPRPCClient
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.testing import eventually, free_port
from kaiju.rpc.context import current
from kaiju.runtime.service import Service
from kaiju.testing.services import started


class Shop(Service):
    service_name = "shop"

    async def start(self) -> None:
        self.seen: list = []
        self.entered = asyncio.Event()  # a `hold` call is running
        self.gate = asyncio.Event()  # opened by the test: `hold` returns

    @rpc.method(permission=Scope.GUEST)
    async def echo(self, data: object = None) -> object:
        return data

    @rpc.method(permission=Scope.GUEST)
    async def add(self, a: int, b: int) -> int:
        return a + b

    @rpc.method(permission=Scope.GUEST)
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @rpc.method(permission=Scope.GUEST)
    async def hold(self) -> str:
        self.entered.set()
        await self.gate.wait()
        return "done"

    @rpc.method(permission=Scope.GUEST)
    async def context(self) -> dict:
        ctx = current()
        return {"correlation_id": ctx.correlation_id, "time_left": ctx.time_left()}

    @rpc.method(permission=Scope.GUEST)
    async def note(self, value: int) -> None:
        self.seen.append(value)

    @rpc.method
    async def secret(self) -> str:
        return "s"


@pytest.fixture
async def server():
    http = HTTPServer(port=free_port(), max_body_size=2048, shutdown_timeout=2)
    shop = Shop()
    async with started(shop, RPCServer(), http):
        yield http


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def post(session, url, body, headers=None):
    async with session.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_call_over_http(server, session):
    status, headers, body = await post(session, server.url, b'{"jsonrpc":"2.0","id":7,"method":"shop.echo","params":{"data":[1,"a"]}}')
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert msgspec.json.decode(body) == {"jsonrpc": "2.0", "id": 7, "result": [1, "a"]}
    assert headers["Correlation-Id"]


async def test_headers_pass_through(server, session):
    body = b'{"jsonrpc":"2.0","id":1,"method":"shop.context"}'
    status, headers, raw = await post(session, server.url, body, {"Correlation-Id": "http-1", "Timeout": "3"})
    result = msgspec.json.decode(raw)["result"]
    assert headers["Correlation-Id"] == "http-1" and result["correlation_id"] == "http-1"
    assert 0 < result["time_left"] <= 3


async def test_guest_scope_over_http(server, session):
    _, _, raw = await post(session, server.url, b'{"jsonrpc":"2.0","id":1,"method":"shop.secret"}')
    assert msgspec.json.decode(raw)["error"]["code"] == -32601


@pytest.mark.parametrize(
    "body, code",
    [(b"{not json", -32700), (b"", -32700), (b'{"jsonrpc":"2.0","method":5,"id":1}', -32600), (b"[]", -32600)],
)
async def test_bad_bodies_get_jsonrpc_errors(server, session, body, code):
    status, headers, raw = await post(session, server.url, body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert msgspec.json.decode(raw)["error"]["code"] == code


async def test_body_too_large_is_413_with_jsonrpc_error(server, session):
    big = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "shop.echo", "params": {"data": "x" * 5000}})
    status, headers, raw = await post(session, server.url, big)
    assert status == 413 and msgspec.json.decode(raw)["error"]["data"]["type"] == "InvalidRequest"


async def _slowly(*chunks: bytes):
    """A streamed (chunked) body whose parts arrive apart: the handler runs before the body is complete."""
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0.05)


async def test_body_arriving_in_parts_is_read_whole(server, session):
    body = b'{"jsonrpc":"2.0","id":1,"method":"shop.echo","params":{"data":"' + b"y" * 100 + b'"}}'
    status, _, raw = await post(session, server.url, _slowly(body[:40], body[40:]))
    assert status == 200 and msgspec.json.decode(raw)["result"] == "y" * 100


async def test_body_too_large_arriving_in_parts_is_413(server, session):
    status, _, raw = await post(session, server.url, _slowly(b'{"jsonrpc":"2.0","id":1,"params":"', b"x" * 1500, b"x" * 1500, b'"}'))
    assert status == 413 and msgspec.json.decode(raw)["error"]["data"]["type"] == "InvalidRequest"


@pytest.mark.parametrize(
    "head, body",
    [
        (b"Content-Encoding: gzip\r\nContent-Length: 3", b"abc"),  # not gzip at all
        (b"Content-Encoding: deflate\r\nTransfer-Encoding: chunked", b"3\r\nabc\r\n0\r\n\r\n"),
    ],
)
async def test_unreadable_body_gets_a_jsonrpc_error(head, body, caplog):
    caplog.set_level(logging.INFO)
    http = HTTPServer(port=free_port())
    async with started(Shop(), RPCServer(), http):
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(b"POST /public/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n" + head + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
        writer.close()
    # stopped: the server has waited for the connection's handler, so whatever it logs is in
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", status_line
    assert b"Content-Type: application/json" in rest
    assert msgspec.json.decode(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == -32600
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


async def test_get_is_405_with_jsonrpc_error(server, session):
    async with session.get(server.url) as resp:
        assert resp.status == 405 and (await resp.json())["error"]["code"] == -32600


async def test_other_path_is_404_with_jsonrpc_error(server, session):
    status, _, raw = await post(session, server.url.replace("/public/rpc", "/other"), b"{}")
    assert status == 404 and msgspec.json.decode(raw)["error"]["code"] == -32601
    status, _, raw = await post(session, server.url + "?x=1", b'{"jsonrpc":"2.0","id":1,"method":"shop.add","params":[1,2]}')
    assert status == 200 and msgspec.json.decode(raw)["result"] == 3


async def test_notification_is_204(server, session):
    status, _, raw = await post(session, server.url, b'{"jsonrpc":"2.0","method":"shop.note","params":[1]}')
    assert status == 204 and raw == b""


async def test_busy_port_fails_at_start_and_construction_does_no_io():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http = HTTPServer(port=port)  # no bind here
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*reuse_port"):
            async with started(Shop(), RPCServer(), http):
                pass


async def test_reuse_port_shares_a_port():
    port = free_port()
    shop = Shop()
    one = HTTPServer(name="one", port=port, reuse_port=True)
    two = HTTPServer(name="two", port=port, reuse_port=True)
    async with started(shop, RPCServer(), one, two):
        async with aiohttp.ClientSession() as s:
            status, _, _ = await post(s, one.url, b'{"jsonrpc":"2.0","id":1,"method":"shop.echo"}')
            assert status == 200


async def test_unix_socket(tmp_path):
    path = str(tmp_path / "rpc.sock")
    http = HTTPServer(unix_socket=path)
    client = HTTPClient(unix_socket=path, base_url="http://localhost")
    rpc_client = HTTPRPCClient()
    async with started(Shop(), RPCServer(), http, client, rpc_client):
        assert await rpc_client.call("shop.add", {"a": 1, "b": 2}) == 3


async def test_stop_lets_in_flight_requests_finish():
    shop, http = Shop(), HTTPServer(port=free_port(), shutdown_timeout=5)

    async def open_the_gate_once_stopping() -> None:
        await eventually(lambda: http.runner is None, what="the stop to begin")
        for _ in range(20):  # loop turns, not time: a stop that does not wait has cut the request by now
            await asyncio.sleep(0)
        shop.gate.set()

    async with aiohttp.ClientSession() as s:
        async with started(shop, RPCServer(), http):
            pending = asyncio.ensure_future(post(s, http.url, b'{"jsonrpc":"2.0","id":1,"method":"shop.hold"}'))
            await eventually(shop.entered.is_set, what="the request in its method")
            opener = asyncio.ensure_future(open_the_gate_once_stopping())
        status, _, raw = await pending
        await opener
    answer = msgspec.json.decode(raw)
    assert status == 200 and answer.get("result") == "done", answer


# -- clients ---------------------------------------------------------------------------


@pytest.fixture
async def clients(server):
    base = server.url.rsplit("/public/rpc", 1)[0]
    http = HTTPClient(base_url=base, timeout=10)
    client = HTTPRPCClient()
    async with started(http, client):
        yield client


async def test_a_client_built_without_its_http_client_says_how_to_give_one(server):
    with pytest.raises(TypeError, match=r"needs an HTTPClient to send through: HTTPRPCClient\(http=HTTPClient"):
        await HTTPRPCClient(url=server.url).start()  # a WSRPCClient's url= is no HTTPRPCClient setting
    http = HTTPClient(base_url=server.url.rsplit("/public/rpc", 1)[0])
    client = HTTPRPCClient(http=http)  # as docs/http.rst shows, outside an app
    await http.start()
    try:
        await client.start()
        assert await client.call("shop.add", {"a": 2, "b": 3}) == 5
    finally:
        await client.stop()
        await http.stop()


async def test_client_call(clients):
    assert await clients.call("shop.add", {"a": 2, "b": 3}) == 5
    assert await clients.call("shop.add", [2, 3]) == 5


async def test_client_raises_typed_errors(clients):
    with pytest.raises(rpc.InvalidParams) as info:
        await clients.call("shop.add", {"a": "x", "b": 1})
    assert info.value.data["field"] == "a"
    with pytest.raises(rpc.MethodNotFound):
        await clients.call("shop.secret")


async def test_client_timeout_becomes_request_timeout(clients):
    with pytest.raises(rpc.RequestTimeout):
        await clients.call("shop.sleep", [5], timeout=0.1)


async def test_client_nowait(clients, server):
    assert await clients.call("shop.note", [5], nowait=True) is None
    shop = server.app.services["shop"]
    await eventually(lambda: shop.seen, what="the notification to run")
    assert shop.seen == [5]


async def test_client_call_multiple(clients):
    assert await clients.call_multiple(("shop.add", [1, 2]), {"method": "shop.echo", "params": {"data": "x"}}) == [3, "x"]
    results = await clients.call_multiple(("shop.add", [1, "x"]), ("shop.add", [1, 1]), raise_exception=False)
    assert isinstance(results[0], rpc.InvalidParams) and results[1] == 2
    with pytest.raises(rpc.InvalidParams):
        await clients.call_multiple(("shop.add", [1, "x"]), ("shop.add", [1, 1]))
    templated = await clients.call_multiple(("shop.add", [1, 2]), ("shop.add", {"a": "[0]", "b": 1}), use_template=True)
    assert templated == [3, 4]


async def test_client_propagates_correlation_id_and_deadline(server, clients):
    class Relay(Service):
        service_name = "relay"

        async def start(self) -> None:
            pass

        @rpc.method
        async def relay(self) -> dict:
            return await clients.call("shop.context")

    local = RPCServer(name="local_rpc")
    async with started(Relay(), local):
        result = await local.call("relay.relay", headers={"Correlation-Id": "trace-9", "Timeout": "2"})
    assert result["correlation_id"] == "trace-9"
    assert 0 < result["time_left"] <= 2.01


async def test_starts_again_after_a_stop(session):
    http = HTTPServer(port=free_port())
    shop, rpc_server = Shop(), RPCServer()
    body = b'{"jsonrpc":"2.0","id":1,"method":"shop.add","params":[2,2]}'
    async with started(shop, rpc_server, http):
        status, _, raw = await post(session, http.url, body)
        assert status == 200 and msgspec.json.decode(raw)["result"] == 4
    assert http.runner is None
    with pytest.raises(aiohttp.ClientConnectionError):  # stopped: nothing listens
        await post(session, http.url, body)
    await http.start()
    try:
        status, _, raw = await post(session, http.url, body)
        assert status == 200 and msgspec.json.decode(raw)["result"] == 4
        with pytest.raises(RuntimeError, match="already started"):
            await http.start()
    finally:
        await http.stop()


async def test_framing_error_is_a_jsonrpc_error(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /public/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: nope\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", status_line
    assert b"Content-Type: application/json" in rest
    assert msgspec.json.decode(rest.partition(b"\r\n\r\n")[2])["error"]["data"]["type"] == "InvalidRequest"


def test_no_router_and_no_private_aiohttp_or_aiomisc_names():
    import inspect
    import re

    import kaiju.http.server as module
    import kaiju.runtime.entrypoint as entrypoint_module

    for mod in (module, entrypoint_module):
        source = inspect.getsource(mod)
        # a private name read off an aiohttp or aiomisc object, or imported from one of their modules
        assert not re.search(r"(aiohttp|aiomisc|web|super\(\))\.(\w+\.)?_[A-Za-z]", source), mod.__name__
        assert not re.search(r"from (aiohttp|aiomisc)[\w.]* import _|aiomisc\.context_vars|aiomisc\.utils", source), mod.__name__
    assert "UrlDispatcher" not in inspect.getsource(module) and "middlewares" not in inspect.getsource(module)
