"""The one request path: callers waiting for the app, session changes made by methods,
strict headers, invalid requests without an id, bounded introspection patterns."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from kaiju import rpc
from kaiju.rpc import RPCServer, Scope, Session
from kaiju.rpc.context import current
from kaiju.rpc.protocol import PlainHeaders, plain_only
from kaiju.rpc.sessions import SessionStore
from kaiju.runtime.service import App, Service
from kaiju.testing.services import started
from tests.rpc.conftest import Calc

decode = msgspec.json.decode


class Accounts(Service):
    """Logs callers in and out by changing the request's session; counts a session's visits."""

    service_name = "accounts"

    async def start(self) -> None:
        pass

    @rpc.method(permission=Scope.GUEST)
    async def login(self, name: str) -> str:
        current().session = Session(id=f"s-{name}", user_id=name, scope=Scope.USER)
        return name

    @rpc.method(permission=Scope.USER)
    async def logout(self) -> bool:
        current().session = None
        return True

    @rpc.method(permission=Scope.USER)
    async def visit(self) -> int:
        data = current().session.data
        data["visits"] = data.get("visits", 0) + 1
        return data["visits"]


class Store(SessionStore):
    """Sessions in a dict; records what `finish_session` was given."""

    service_name = "sessions"

    async def start(self) -> None:
        self.saved: list[tuple[str, dict]] = []
        self.sessions = {"s-bob": Session(id="s-bob", user_id="bob", scope=Scope.USER, data={})}

    async def load_session(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def finish_session(self, session: Session) -> None:
        self.saved.append((session.id, dict(session.data)))


def body(method: str, params=None, id=1) -> bytes:
    req = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        req["params"] = params
    return msgspec.json.encode(req)


# -- callers wait for the app ------------------------------------------------------


async def test_in_process_call_before_the_app_started_waits_for_it():
    calc, srv = Calc(), RPCServer()
    app = App(name="t", env="t")
    app.managed = True  # an entrypoint will set App.started
    for svc in (calc, srv):
        svc.bind(app)
        app.services[svc.name] = svc
    await calc.start()
    await srv.start()
    try:
        pending = asyncio.ensure_future(srv.call("calc.subtract", [5, 2]))
        answer = asyncio.ensure_future(srv.handle(body("calc.subtract", [7, 2])))
        await asyncio.sleep(0.05)
        assert not pending.done() and not answer.done()  # held until the start ends
        app.started.set()
        assert await asyncio.wait_for(pending, 5) == 3
        response, _ = await asyncio.wait_for(answer, 5)
        assert decode(response)["result"] == 5
    finally:
        await srv.stop()


async def test_a_call_waiting_for_the_start_times_out_inside_its_deadline():
    srv = RPCServer()
    app = App(name="t", env="t")
    app.managed = True
    srv.bind(app)
    app.services[srv.name] = srv
    await srv.start()
    try:
        with pytest.raises(rpc.RequestTimeout, match="did not start"):
            await srv.call("rpc.status", headers={"Timeout": "0.1"})
        response, _ = await srv.handle(body("rpc.status"), {"Timeout": "0.1"}, scope=Scope.SYSTEM)
        assert decode(response)["error"]["data"]["type"] == "RequestTimeout"
    finally:
        await srv.stop()


# -- a method changes the caller's session -------------------------------------------


async def test_login_and_logout_answer_the_session_id_on_every_path():
    accounts, store, srv = Accounts(), Store(), RPCServer()
    async with started(accounts, store, srv):
        _, out = await srv.handle(body("accounts.login", {"name": "ann"}))  # the plain path
        assert out["Session-Id"] == "s-ann"
        _, out = await srv.handle({"jsonrpc": "2.0", "method": "accounts.login", "params": ["cy"], "id": 2})  # general
        assert out["Session-Id"] == "s-cy"
        batch = [msgspec.json.decode(body("rpc.api", id=1)), msgspec.json.decode(body("accounts.login", {"name": "di"}, id=2))]
        _, out = await srv.handle(msgspec.json.encode(batch))
        assert out["Session-Id"] == "s-di"
        response, out = await srv.handle(body("accounts.logout"), {"Session-Id": "s-bob"})
        assert decode(response)["result"] is True and out["Session-Id"] == ""
        _, out = await srv.handle(body("rpc.api"))
        assert "Session-Id" not in out


async def test_session_data_is_handed_to_the_store_after_the_request():
    accounts, store, srv = Accounts(), Store(), RPCServer()
    async with started(accounts, store, srv):
        response, out = await srv.handle(body("accounts.visit"), {"Session-Id": "s-bob"})
        assert decode(response)["result"] == 1 and out["Session-Id"] == "s-bob"
        assert await srv.call("accounts.visit", headers={"Session-Id": "s-bob"}) == 2
        assert store.saved == [("s-bob", {"visits": 1}), ("s-bob", {"visits": 2})]
        await srv.handle(body("accounts.logout"), {"Session-Id": "s-bob"})
        assert len(store.saved) == 2  # logged out: nothing left to save


# -- strict input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("Timeout", "1_0"), ("Timeout", "nan"), ("Timeout", "inf"), ("Timeout", "1e309"), ("Timeout", "0"), ("Timeout", ""),
        ("Timeout", "²"), ("Deadline", "-5"), ("RPC-Retries", "²"), ("RPC-Retries", "1.5"), ("RPC-Retries", "9" * 5000),
        ("Correlation-Id", "x" * 129), ("Correlation-Id", "café"), ("RPC-Batch-Template", "maybe"),
    ],
)
async def test_header_values_are_read_strictly(name, value):
    calc, srv = Calc(), RPCServer()
    async with started(calc, srv):
        response, _ = await srv.handle(body("calc.get_data"), {name.lower(): value})
        error = decode(response)["error"]
        assert error["code"] == -32600 and error["data"]["header"] == name and decode(response)["id"] == 1
        with pytest.raises(rpc.InvalidRequest):
            await srv.call("calc.get_data", headers={name: value})


async def test_headers_checked_once_are_plain_only_without_a_kaiju_header():
    """`plain_only` marks headers without any the dispatcher reads (`PlainHeaders`: handle does
    not look through them again); with one, they stay a dict and the header is read."""
    calc, srv = Calc(), RPCServer()
    async with started(calc, srv):
        plain = plain_only({"X-Trace": "t-1", "User-Agent": "test"})
        assert type(plain) is PlainHeaders and plain == {"X-Trace": "t-1", "User-Agent": "test"}
        response, _ = await srv.handle(body("calc.sum", {"a": 1, "b": 2}), plain)
        assert decode(response)["result"] == 3
        for name, value in (("timeout", "0"), ("Correlation-ID", "x" * 129)):
            checked = plain_only({"X-Trace": "t-1", name: value})
            assert type(checked) is dict
            response, _ = await srv.handle(body("calc.sum", {"a": 1}), checked)
            assert decode(response)["error"]["code"] == -32600


async def test_invalid_request_without_id_is_answered_with_id_null():
    calc, srv = Calc(), RPCServer()
    async with started(calc, srv):
        for raw in (b'{"jsonrpc":"2.0","method":"calc.get_data","params":0}', b'{"jsonrpc":"1.0","method":"calc.get_data"}'):
            response, _ = await srv.handle(raw)
            assert decode(response) == {"jsonrpc": "2.0", "id": None, "error": decode(response)["error"]}
            assert decode(response)["error"]["code"] == -32600
        batch = b'[{"jsonrpc":"2.0","method":"calc.get_data","params":"x"},{"jsonrpc":"2.0","method":"calc.get_data"}]'
        response, _ = await srv.handle(batch)
        (answer,) = decode(response)  # the notification stays silent
        assert answer["id"] is None and answer["error"]["code"] == -32600


async def test_api_pattern_is_bounded():
    calc, srv = Calc(), RPCServer()
    async with started(calc, srv):
        response, _ = await srv.handle(body("rpc.api", {"pattern": "*" * 257}))
        assert decode(response)["error"]["data"]["field"] == "pattern"
        response, _ = await srv.handle(body("rpc.api", {"pattern": "calc.s*"}))
        names = [m["name"] for m in decode(response)["result"]["methods"]]
        assert names == ["calc.sleep", "calc.subtract", "calc.sum"]


async def test_kaiju_tools_requests_are_accepted_when_asked():
    calc, strict, lenient = Calc(), RPCServer(), RPCServer(name="legacy", kaiju_tools_requests=True)
    async with started(calc, strict, lenient):
        no_member = b'{"id": 7, "method": "calc.subtract", "params": [5, 2]}'
        response, _ = await strict.handle(no_member)
        error = decode(response)["error"]
        assert error["data"]["field"] == "jsonrpc" and "kaiju_tools_requests: true" in error["message"], error
        response, _ = await lenient.handle(no_member)
        assert decode(response) == {"jsonrpc": "2.0", "id": 7, "result": 3}
        # kaiju-tools answered a request without an id: so does this mode, with id null
        response, _ = await lenient.handle({"method": "calc.subtract", "params": {"minuend": 1, "subtrahend": 1}})
        assert decode(response) == {"jsonrpc": "2.0", "id": None, "result": 0}
        batch = b'[{"id": 1, "method": "calc.get_data"}, {"jsonrpc": "2.0", "method": "calc.notify_hello"}]'
        response, _ = await lenient.handle(batch)
        assert decode(response) == [{"jsonrpc": "2.0", "id": 1, "result": ["hello", 5]}]  # the 2.0 notification stays one
        response, _ = await lenient.handle(b'{"jsonrpc": "1.0", "id": 2, "method": "calc.get_data"}')
        assert decode(response)["error"]["code"] == -32600  # a wrong version is still wrong


async def test_an_override_without_the_decorator_keeps_the_rpc_method():
    class QuietCalc(Calc):
        async def subtract(self, minuend: int, subtrahend: int) -> int:  # a test double's override
            return 0

    calc, srv = QuietCalc(), RPCServer()
    async with started(calc, srv):
        assert await srv.call("calc.subtract", [5, 2]) == 0
        assert srv.table.methods["calc.subtract"].permission == Scope.GUEST
