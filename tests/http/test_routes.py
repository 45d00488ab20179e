"""HTTP routes of services and of the config, on a real HTTPServer on a free port."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec
import pytest
from aiohttp import web

from kaiju.cli import main as kaiju_run
from kaiju.http import route
from kaiju.http.routes import RouteTable, config_routes
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.service import Service
from kaiju.testing import free_port
from kaiju.testing.services import started

HERE = "tests.http.test_routes"


async def eventually(predicate, timeout: float = 10.0, what: str = "the condition"):
    """Poll `predicate` until it is true; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come true within {timeout} s")
        await asyncio.sleep(0.01)


class Shop(Service):
    service_name = "shop"

    async def start(self) -> None:
        """Nothing to open."""

    @route("GET", "/items/{id}")
    async def item(self, request):
        return {"id": request.match_info["id"], "query": dict(request.query), "started": self.app.started.is_set()}

    @route("POST", "/items")
    async def create(self, request):
        return web.json_response({"created": await request.json()}, status=201)

    @route("GET", "/metrics")
    async def metrics(self, request):
        return web.Response(text="# TYPE up gauge\nup 1\n", content_type="text/plain")

    @route("GET", "/boom")
    async def boom(self, request):
        raise RuntimeError("a bug")

    @route("GET", "/forbidden")
    async def forbidden(self, request):
        raise web.HTTPForbidden(text="not for you")

    @route("GET", "/moved")
    async def moved(self, request):
        raise web.HTTPFound("/items/1")

    @route("GET", "/odd")
    async def odd(self, request):
        return object()  # not JSON


class Other(Service):
    service_name = "other"

    async def start(self) -> None:
        """Nothing to open."""

    @route("GET", "/other")
    async def other(self, request):
        return "other"


async def hello(request):
    """A route handler named in config."""
    return {"hello": request.query.get("name", "world")}


def not_async(request):
    return None


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest.fixture
async def server():
    http = HTTPServer(port=free_port(), routes=[{"path": "/hello", "handler": f"{HERE}:hello"}])
    async with started(Shop(), Other(), RPCServer(), http):
        yield http


def base(http: HTTPServer) -> str:
    return f"http://127.0.0.1:{http.socket.getsockname()[1]}"


async def get(session, url, **kwargs):
    async with session.get(url, **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_path_params_and_query(server, session):
    status, headers, body = await get(session, base(server) + "/items/42?color=red")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(body) == {"id": "42", "query": {"color": "red"}, "started": True}


async def test_a_get_route_answers_head(server, session):
    async with session.head(base(server) + "/items/42") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert await resp.read() == b""


async def test_json_body_and_own_response(server, session):
    async with session.post(base(server) + "/items", json={"name": "cup"}) as resp:
        assert resp.status == 201
        assert await resp.json() == {"created": {"name": "cup"}}


async def test_plain_text_response_is_sent_as_is(server, session):
    status, headers, body = await get(session, base(server) + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body == b"# TYPE up gauge\nup 1\n"


async def test_config_route(server, session):
    status, _, body = await get(session, base(server) + "/hello?name=kaiju")
    assert status == 200 and msgspec.json.decode(body) == {"hello": "kaiju"}


async def test_every_service_is_served_by_default(server, session):
    status, _, body = await get(session, base(server) + "/other")
    assert status == 200 and body == b'"other"'


async def test_rpc_still_answers_beside_routes(server, session):
    async with session.post(server.url, data=b'{"jsonrpc":"2.0","id":1,"method":"rpc.list"}', headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200 and (await resp.json())["id"] == 1


async def test_handler_raising_is_500_json_logged_once(server, session, caplog):
    with caplog.at_level(logging.ERROR):
        status, headers, body = await get(session, base(server) + "/boom")
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(body)["error"]["data"]["type"] == "InternalError"
    failed = [r for r in caplog.records if r.getMessage().startswith("route failed")]
    assert len(failed) == 1 and failed[0].exc_info[1].args == ("a bug",)


async def test_unencodable_result_is_500_json(server, session):
    status, _, body = await get(session, base(server) + "/odd")
    assert status == 500 and msgspec.json.decode(body)["error"]["code"] == -32603


async def test_http_exception_keeps_its_status_with_json(server, session):
    status, headers, body = await get(session, base(server) + "/forbidden")
    assert status == 403 and headers["Content-Type"] == "application/json"
    error = msgspec.json.decode(body)["error"]
    assert error["message"] == "not for you" and error["data"] == {"type": "HTTPForbidden", "status": 403}
    status, headers, _ = await get(session, base(server) + "/moved", allow_redirects=False)
    assert status == 302 and headers["Location"] == "/items/1"


async def test_unknown_path_is_404_json(server, session):
    status, headers, body = await get(session, base(server) + "/nowhere")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(body)["error"]["code"] == -32601


async def test_wrong_method_is_405_with_allow(server, session):
    async with session.delete(base(server) + "/items/1") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET,HEAD"
        assert (await resp.json())["error"]["code"] == -32600


async def test_route_services_chooses_whose_routes(session):
    http = HTTPServer(port=free_port(), route_services=["other"])
    async with started(Shop(), Other(), RPCServer(), http):
        assert (await get(session, base(http) + "/other"))[0] == 200
        assert (await get(session, base(http) + "/items/1"))[0] == 404


async def test_probes_are_served_with_routes_off(session):
    http = HTTPServer(port=free_port(), route_services="none", live_path="/alive")
    async with started(Shop(), RPCServer(), http):
        assert (await get(session, base(http) + "/items/1"))[0] == 404
        assert (await get(session, base(http) + "/alive"))[0] == 200
        assert (await get(session, base(http) + "/health/ready"))[0] == 200
        assert (await get(session, base(http) + "/health/live"))[0] == 404


def test_same_method_and_path_twice_is_an_error():
    routes = config_routes([{"path": "/items/{id}", "handler": f"{HERE}:hello"}])
    from kaiju.http.routes import routes_of

    with pytest.raises(ValueError, match=r'GET /items/\{id\} is declared twice: by service "shop" and by the config'):
        RouteTable([*routes_of(Shop(), "shop"), *routes])


class SmallerShop(Shop):
    """Inherits Shop's routes but one: an override without @route is no route."""

    service_name = "smaller"

    async def boom(self, request):
        return web.Response(text="no boom here")

    @property
    def started_here(self) -> bool:  # a property is looked at without being read
        raise AssertionError("routes_of read a property")


def test_routes_are_inherited_and_an_unmarked_override_drops_one():
    from kaiju.http.routes import routes_of

    found = {(r.method, r.path): r for r in routes_of(SmallerShop(), "smaller")}
    assert ("GET", "/items/{id}") in found and ("POST", "/items") in found
    assert ("GET", "/boom") not in found
    assert all(r.service == "smaller" for r in found.values())


async def test_duplicate_route_fails_the_start():
    http = HTTPServer(port=free_port(), routes=[{"path": "/other", "handler": f"{HERE}:hello"}])
    with pytest.raises(ValueError, match="declared twice"):
        async with started(Other(), RPCServer(), http):
            pass


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        ("no.such.module:f", "handler: cannot import 'no.such.module'"),
        (f"{HERE}:missing", f"handler: module '{HERE}' has no 'missing'"),
        (f"{HERE}:not_async", f"handler: {HERE}:not_async is not an async def"),
        ("nocolon", 'handler: expected "package.module:function"'),
    ],
)
def test_check_rejects_a_bad_handler_in_one_line(tmp_path, capsys, handler, problem):
    err = check_error(tmp_path, capsys, f"routes: [{{path: /x, handler: {handler!r}}}]")
    assert f"services[HTTPServer].settings.routes: entry 0 (GET /x): {problem}" in err, err


def check_error(tmp_path, capsys, http_settings: str) -> str:
    """What `kaiju-run check` says (exit status 2, one line) of an app with Shop, Other and these HTTPServer settings."""
    cfg = tmp_path / "app.yml"
    cfg.write_text(
        f"main: {{name: t}}\nservices:\n  - cls: RPCServer\n  - cls: {HERE}:Shop\n  - cls: {HERE}:Other\n"
        f"  - cls: HTTPServer\n    settings: {{{http_settings}}}\n"
    )
    assert kaiju_run(["-c", str(cfg), "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_check_rejects_a_route_declared_by_a_service_and_the_config(tmp_path, capsys):
    err = check_error(tmp_path, capsys, f"routes: [{{path: /other, handler: '{HERE}:hello'}}]")
    assert 'settings.routes: GET /other is declared twice: by service "other" and by the config' in err, err


def test_check_rejects_an_unknown_service_in_route_services(tmp_path, capsys):
    err = check_error(tmp_path, capsys, "route_services: [shop, ghost]")
    assert 'settings.route_services: expected names of services of the app, got "ghost"' in err, err


def test_check_rejects_a_route_at_the_rpc_path(tmp_path, capsys):
    err = check_error(tmp_path, capsys, f"routes: [{{method: POST, path: /public/rpc, handler: '{HERE}:hello'}}]")
    assert "settings.routes: POST /public/rpc (by the config) is at rpc_path" in err, err


# -- routes in the service graph -------------------------------------------------------


class Gate(Service):
    """Starts when told to, or fails; declares a route. Needs the HTTP server so it starts after it."""

    service_name = "gate"
    http: HTTPServer
    fail: bool = False

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("told to fail")
        await self.app.etc["open"].wait()

    @route("GET", "/gate")
    async def gate(self, request):
        return {"started": self.app.started.is_set()}


def gate_app(port: int, **gate) -> Entrypoint:
    config = {
        "main": {"name": "t"},
        "services": [
            {"cls": "RPCServer"},
            {"cls": "HTTPServer", "settings": {"port": port}},
            {"cls": f"{HERE}:Gate", "required": not gate.get("fail", False), "settings": gate},
        ],
    }
    return Entrypoint(config=config, catch_signals=(), log_config=False)


async def test_a_request_before_the_start_waits_for_it(session):
    port = free_port()
    ep = gate_app(port)
    ep.app.etc["open"] = opened = asyncio.Event()
    entering = asyncio.ensure_future(ep.__aenter__())
    http = ep.app.services["http"]
    await eventually(lambda: http.runner is not None, what="the HTTP server listening")
    request = asyncio.ensure_future(get(session, f"http://127.0.0.1:{port}/gate"))
    await eventually(lambda: http.held_requests == 1, what="the request held until the start")
    assert not request.done()
    opened.set()
    await entering
    try:
        status, _, body = await request
        assert status == 200 and msgspec.json.decode(body) == {"started": True}
    finally:
        await ep.__aexit__(None, None, None)


async def test_route_of_a_service_left_out_is_503(session):
    port = free_port()
    async with gate_app(port, fail=True) as ep:
        assert "gate" not in ep.app.services
        status, headers, body = await get(session, f"http://127.0.0.1:{port}/gate")
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert 'service "gate" is not running' in msgspec.json.decode(body)["error"]["message"]



def test_route_modules_use_no_private_aiohttp_or_aiomisc_names():
    import inspect
    import re

    import kaiju.health
    import kaiju.http.routes

    for mod in (kaiju.http.routes, kaiju.health):
        source = inspect.getsource(mod)
        assert not re.search(r"(aiohttp|aiomisc|web|super\(\))\.(\w+\.)?_[A-Za-z]", source), mod.__name__
        assert not re.search(r"from (aiohttp|aiomisc)[\w.]* import _", source), mod.__name__
