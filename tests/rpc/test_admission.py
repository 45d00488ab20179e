"""Admission over a real HTTP server: requests and notifications share one bounded line in
front of `max_parallel_tasks`; past it a request is refused at once with Overloaded and a
notification is dropped and counted, so the server keeps answering."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest

from kaiju import rpc
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import Service
from kaiju.testing import free_port
from kaiju.testing.services import started


class Gate(Service):
    service_name = "gate"

    async def start(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self.done = 0

    @rpc.method(permission=Scope.GUEST)
    async def wait(self, n: int = 0) -> int:
        self.entered += 1
        await self.open.wait()
        self.done += 1
        return n

    @rpc.method(permission=Scope.GUEST)
    async def quick(self) -> str:
        return "ok"


async def eventually(check, timeout: float = 10.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


async def status_of(server: RPCServer) -> dict:
    """`rpc.status` called directly: over RPC it would wait in (or be refused by) the full line."""
    return await server.table.methods["rpc.status"].func()


@pytest.fixture
async def served():
    gate, server = Gate(), RPCServer(max_parallel_tasks=2, max_queue=3)
    http = HTTPServer(port=free_port())
    async with started(gate, server, http), aiohttp.ClientSession() as session:
        yield gate, server, http, session
        gate.open.set()


async def post(session, url, body):
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


def call(method: str, rid: int | None = None, params: dict | None = None) -> bytes:
    req = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if rid is not None:
        req["id"] = rid
    return msgspec.json.encode(req)


async def test_notifications_past_the_line_are_dropped_and_counted(served):
    gate, server, http, session = served
    answers = await asyncio.gather(*(post(session, http.url, call("gate.wait")) for _ in range(40)))
    assert {a for a in answers} == {(204, b"")}
    status = await status_of(server)
    assert status["running"] == 2 and status["waiting"] == 3, status
    assert status["dropped_notifications"] == 40 - 5 and status["max_queue"] == 3
    # a request now finds no slot and no place in line: refused at once, with its id
    _, raw = await post(session, http.url, call("gate.quick", 7))
    error = msgspec.json.decode(raw)["error"]
    assert msgspec.json.decode(raw)["id"] == 7
    assert error["code"] == -32004 and error["data"]["type"] == "Overloaded"
    gate.open.set()
    await eventually(lambda: gate.done == 5, what="the five admitted notifications")
    assert gate.entered == 5
    _, raw = await post(session, http.url, call("gate.quick", 8))
    assert msgspec.json.decode(raw)["result"] == "ok"


async def test_requests_wait_in_line_up_to_its_length(served):
    gate, server, http, session = served
    waiting = [asyncio.ensure_future(post(session, http.url, call("gate.wait", n, {"n": n}))) for n in range(5)]
    await eventually(lambda: server.executor.slots.waiting == 3 and gate.entered == 2, what="two running, three in line")
    _, raw = await post(session, http.url, call("gate.wait", 99, {"n": 99}))
    assert msgspec.json.decode(raw)["error"]["code"] == -32004
    # a batch item is refused alike; its notification is counted as dropped
    batch = b"[" + call("gate.quick", 1) + b"," + call("gate.quick") + b"]"
    _, raw = await post(session, http.url, batch)
    assert [a["error"]["data"]["type"] for a in msgspec.json.decode(raw)] == ["Overloaded"]
    assert (await status_of(server))["dropped_notifications"] == 1
    gate.open.set()
    answers = await asyncio.gather(*waiting)
    assert sorted(msgspec.json.decode(raw)["result"] for _, raw in answers) == [0, 1, 2, 3, 4]
    assert server.executor.slots.waiting == 0 and server.executor.slots.free == 2


async def test_a_request_that_leaves_the_line_frees_its_place(served):
    gate, server, http, session = served
    for _ in range(2):
        asyncio.ensure_future(post(session, http.url, call("gate.wait", 1)))
    await eventually(lambda: gate.entered == 2, what="both slots taken")
    timeouts = aiohttp.ClientTimeout(total=30)
    async with session.post(http.url, data=call("gate.wait", 2), headers={"Timeout": "0.2", "Content-Type": "application/json"}, timeout=timeouts) as resp:
        assert (await resp.json())["error"]["data"]["type"] == "RequestTimeout"
    assert server.executor.slots.waiting == 0 and not server.executor.slots.waiters


async def test_max_queue_zero_refuses_as_soon_as_every_slot_is_taken():
    gate, server = Gate(), RPCServer(max_parallel_tasks=1, max_queue=0)
    async with started(gate, server):
        first = asyncio.ensure_future(server.call("gate.wait", {"n": 1}))
        await eventually(lambda: gate.entered == 1, what="the slot taken")
        with pytest.raises(rpc.Overloaded):
            await server.call("gate.wait", {"n": 2})
        gate.open.set()
        assert await first == 1
