"""A request that meets a cancellation it did not ask for (it awaited shared work that was
cancelled elsewhere) is answered with a JSON-RPC error and logged once; only a client that
went away gets no answer, and that is no error."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import msgspec
import pytest

from kaiju import rpc
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.rpc.access import Session
from kaiju.rpc.errors import InternalError
from kaiju.rpc.sessions import SessionStore
from kaiju.runtime.service import Service
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started

JSON = {"Content-Type": "application/json"}


class Shared(Service):
    """Methods awaiting work that something else cancels (a shared future, a cancelled task)."""

    service_name = "shared"

    async def start(self) -> None:
        self.entered = asyncio.Event()
        self.finished = 0

    @rpc.method(permission=Scope.GUEST)
    async def wait_for_cancelled(self) -> str:
        work = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(work.cancel)  # cancelled by someone else, not this request
        await work
        return "never"

    @rpc.method(permission=Scope.GUEST)
    async def hold(self) -> str:
        self.entered.set()
        try:
            await asyncio.sleep(30)
        finally:
            self.finished += 1
        return "late"


class CancelledLookup(SessionStore):
    """A session store whose lookup awaits a future that was cancelled under it."""

    async def load_session(self, session_id: str) -> Session | None:
        work = asyncio.get_running_loop().create_future()
        work.cancel()
        await work
        return None


@pytest.fixture
async def server():
    http = HTTPServer(port=free_port())
    shared = Shared()
    async with started(shared, CancelledLookup(), RPCServer(), http), aiohttp.ClientSession() as session:
        yield http, shared, session


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_stray_cancellation_in_a_method_is_answered_and_logged_once(server, caplog):
    http, _, session = server
    body = b'{"jsonrpc":"2.0","id":7,"method":"shared.wait_for_cancelled"}'
    with caplog.at_level(logging.INFO):
        async with session.post(http.url, data=body, headers=JSON) as resp:
            answer = msgspec.json.decode(await resp.read())
    assert resp.status == 200 and answer["id"] == 7, answer
    assert answer["error"]["code"] == -32603 and "cancelled" in answer["error"]["message"], answer
    assert len(errors(caplog)) == 1 and "did not ask for" in errors(caplog)[0].getMessage(), caplog.text


async def test_a_stray_cancellation_in_the_session_lookup_is_answered(server, caplog):
    http, _, session = server
    body = b'{"jsonrpc":"2.0","id":8,"method":"shared.hold"}'
    with caplog.at_level(logging.INFO):
        async with session.post(http.url, data=body, headers={**JSON, "Session-Id": "abc"}) as resp:
            answer = msgspec.json.decode(await resp.read())
    assert resp.status == 200 and answer["error"]["code"] == -32603, answer
    assert len(errors(caplog)) == 1, caplog.text


async def test_in_process_callers_get_an_internal_error_too(server):
    rpc_server = server[0].rpc
    with pytest.raises(InternalError, match="cancelled"):
        await rpc_server.call("shared.wait_for_cancelled")


async def test_a_client_that_goes_away_gets_nothing_and_logs_no_error(server, caplog):
    http, shared, _ = server
    body = b'{"jsonrpc":"2.0","id":9,"method":"shared.hold"}'
    with caplog.at_level(logging.INFO):
        async with aiohttp.ClientSession() as hasty:
            call = asyncio.ensure_future(hasty.post(http.url, data=body, headers=JSON))
            await eventually(shared.entered.is_set, what="the method to run")
            call.cancel()  # the client closes its connection mid-request
        await eventually(lambda: shared.finished == 1, what="the method to be cancelled with its connection")
    assert not errors(caplog), caplog.text


class StrayDispatcher(RPCServer):
    """An RPCServer whose dispatch meets a cancellation outside any method (a dispatcher bug,
    or a middleware awaiting shared work): the HTTP handler itself must answer it."""

    async def handle(self, *args, **kwargs):
        work = asyncio.get_running_loop().create_future()
        work.cancel()
        await work


async def test_a_stray_cancellation_outside_the_executor_is_answered_by_the_http_server(caplog):
    http = HTTPServer(port=free_port())
    body = b'{"jsonrpc":"2.0","id":10,"method":"shared.hold"}'
    async with started(StrayDispatcher(), http), aiohttp.ClientSession() as session:
        with caplog.at_level(logging.INFO):
            async with session.post(http.url, data=body, headers=JSON) as resp:
                answer = msgspec.json.decode(await resp.read())
    assert resp.status == 200 and answer["error"]["code"] == -32603, answer
    assert [r.getMessage() for r in errors(caplog)] == ["RPC request cancelled before it was answered"], caplog.text
