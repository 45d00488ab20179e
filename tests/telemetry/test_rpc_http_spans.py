"""Spans of HTTP requests and RPC calls, recorded in memory (`Telemetry` with `exporter: memory`)."""

from __future__ import annotations

import aiohttp
from opentelemetry.trace import SpanKind, StatusCode

from kaiju import rpc
from kaiju.http.client import HTTPClient, HTTPRPCClient
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import App, Service
from kaiju.telemetry import Telemetry
from kaiju.testing import free_port
from kaiju.testing.services import started

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Orders(Service):
    service_name = "orders"

    rpc: RPCServer

    @rpc.method(permission=Scope.GUEST)
    async def create(self, qty: int) -> int:
        return await self.rpc.call("orders.price", {"qty": qty}) + 1

    @rpc.method
    async def price(self, qty: int) -> int:
        return qty * 10

    @rpc.method(permission=Scope.GUEST)
    async def fail(self) -> None:
        raise ValueError("out of stock")


def telemetry() -> Telemetry:
    return Telemetry(exporter="memory", global_provider=False)


async def post(url: str, body: object, headers: dict[str, str] | None = None) -> dict:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        assert response.status == 200
        return await response.json()


async def test_a_request_continues_the_callers_trace_through_nested_calls() -> None:
    tel, http = telemetry(), HTTPServer(port=free_port())
    async with started(tel, RPCServer(), Orders(), http):
        body = {"jsonrpc": "2.0", "id": 7, "method": "orders.create", "params": {"qty": 2}}
        answer = await post(http.url, body, {"traceparent": f"00-{TRACE}-{PARENT}-01", "Correlation-Id": "c-1"})
        assert answer["result"] == 21
        recorder = tel.recorder
        server, create, price = (
            recorder.one("POST /public/rpc"),
            recorder.one("orders.create"),
            recorder.one("orders.price"),
        )
    assert {f"{s.context.trace_id:032x}" for s in (server, create, price)} == {TRACE}
    assert f"{server.parent.span_id:016x}" == PARENT and server.kind is SpanKind.SERVER
    assert recorder.parent_of(create) is server and recorder.parent_of(price) is create
    assert dict(server.attributes) == {
        "http.request.method": "POST",
        "url.path": "/public/rpc",
        "url.scheme": "http",
        "client.address": "127.0.0.1",
        "http.route": "/public/rpc",
        "http.response.status_code": 200,
        "kaiju.correlation_id": "c-1",
    }
    assert dict(create.attributes) == {
        "rpc.system": "jsonrpc",
        "rpc.method": "orders.create",
        "rpc.jsonrpc.version": "2.0",
        "rpc.jsonrpc.request_id": "7",
        "kaiju.correlation_id": "c-1",
        "kaiju.transport": "http",
    }
    assert create.kind is SpanKind.SERVER and price.kind is SpanKind.INTERNAL
    assert price.attributes["kaiju.correlation_id"] == "c-1"  # a nested call keeps its caller's id


async def test_errors_mark_the_call_span_and_batch_items_are_children_of_the_request() -> None:
    tel, http = telemetry(), HTTPServer(port=free_port())
    async with started(tel, RPCServer(), Orders(), http):
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "orders.fail"},
            {"jsonrpc": "2.0", "id": 2, "method": "orders.nope"},
            {"jsonrpc": "2.0", "id": 3, "method": "orders.create", "params": {"qty": "x"}},
        ]
        async with aiohttp.ClientSession() as session, session.post(http.url, json=batch) as response:
            assert [r["error"]["data"]["type"] for r in await response.json()] == [
                "InternalError",
                "MethodNotFound",
                "InvalidParams",
            ]
        recorder = tel.recorder
        server = recorder.one("POST /public/rpc")
    fail, unknown, invalid = recorder.one("orders.fail"), recorder.one("<unknown>"), recorder.one("orders.create")
    assert [recorder.parent_of(s) for s in (fail, unknown, invalid)] == [server] * 3
    assert server.parent is None  # no traceparent came: the request began the trace
    assert fail.status.status_code is StatusCode.ERROR and fail.attributes["error.type"] == "InternalError"
    assert fail.attributes["rpc.jsonrpc.error_code"] == -32603
    assert [e.attributes["exception.type"] for e in fail.events] == ["ValueError"]  # the method's own exception
    assert unknown.attributes["error.type"] == "MethodNotFound" and unknown.attributes["rpc.method"] == "<unknown>"
    assert invalid.attributes["error.type"] == "InvalidParams"
    assert server.status.status_code is StatusCode.UNSET  # errors in the body: HTTP 200


async def test_an_in_process_call_begins_a_trace_or_continues_its_headers() -> None:
    tel, server = telemetry(), RPCServer()
    async with started(tel, server, Orders()):
        assert await server.call("orders.price", {"qty": 1}) == 10
        await server.handle(
            b'{"jsonrpc": "2.0", "id": 1, "method": "orders.price", "params": {"qty": 2}}',
            {"traceparent": f"00-{TRACE}-{PARENT}-01"},
            scope=Scope.SYSTEM,
        )
        first, second = tel.spans("orders.price")
    assert first.parent is None and first.kind is SpanKind.INTERNAL
    assert f"{second.context.trace_id:032x}" == TRACE and f"{second.parent.span_id:016x}" == PARENT


async def test_without_telemetry_nothing_traces_and_calls_go_straight_to_the_executor() -> None:
    server, http = RPCServer(), HTTPServer(port=free_port())
    async with started(server, Orders(), http):
        answer = await post(http.url, {"jsonrpc": "2.0", "id": 1, "method": "orders.create", "params": {"qty": 1}})
        assert answer["result"] == 11
        assert server.dispatcher.run == server.executor.run  # no middleware: no span either


class Front(Service):
    service_name = "front"

    client: HTTPRPCClient

    @rpc.method
    async def quote(self, qty: int) -> int:
        return await self.client.call("orders.create", {"qty": qty})


async def test_an_rpc_client_call_is_a_client_span_the_other_app_continues() -> None:
    back_tel, http = telemetry(), HTTPServer(port=free_port())
    async with started(back_tel, RPCServer(), Orders(), http, app=App(name="back", env="test")):
        front_tel, front_rpc = telemetry(), RPCServer()
        client = HTTPClient(base_url=http.url.removesuffix(http.rpc_path))
        async with started(front_tel, client, HTTPRPCClient(), front_rpc, Front(), app=App(name="front", env="test")):
            assert await front_rpc.call("front.quote", {"qty": 3}) == 31
        quote, call = front_tel.recorder.one("front.quote"), front_tel.recorder.one("orders.create")
        server, create = back_tel.recorder.one("POST /public/rpc"), back_tel.recorder.one("orders.create")
    assert call.kind is SpanKind.CLIENT and front_tel.recorder.parent_of(call) is quote
    assert call.attributes["rpc.method"] == "orders.create" and call.attributes["http.response.status_code"] == 200
    assert call.attributes["url.full"] == http.url
    assert server.parent.span_id == call.context.span_id and server.context.trace_id == quote.context.trace_id
    assert back_tel.recorder.parent_of(create) is server


class Echoes(Service):
    service_name = "echoes"

    @rpc.method(permission=Scope.GUEST)
    async def traceparent(self) -> str | None:
        """The traceparent this call came with."""
        headers = rpc.current().headers
        return headers.get("traceparent") if headers else None


class Relay(Service):
    service_name = "relay"

    client: HTTPRPCClient

    @rpc.method(permission=Scope.GUEST)
    async def ask(self) -> str | None:
        return await self.client.call("echoes.traceparent")


async def test_below_a_span_sampled_out_no_span_is_made_and_the_decision_travels_on() -> None:
    back_tel, back_http = telemetry(), HTTPServer(port=free_port())
    async with started(back_tel, RPCServer(), Echoes(), back_http, app=App(name="back", env="test")):
        front_tel, front_http = telemetry(), HTTPServer(port=free_port())
        client = HTTPClient(base_url=back_http.url.removesuffix(back_http.rpc_path))
        front = (front_tel, client, HTTPRPCClient(), RPCServer(), Relay(), front_http)
        async with started(*front, app=App(name="front", env="test")):
            body = {"jsonrpc": "2.0", "id": 1, "method": "relay.ask"}
            sampled_out = await post(front_http.url, body, {"traceparent": f"00-{TRACE}-{PARENT}-00"})
            sampled = await post(front_http.url, body, {"traceparent": f"00-{TRACE}-{PARENT}-01"})
        # the caller sampled the trace out: no span was made in front (not even one that records
        # nothing), so the back app is handed the caller's own context, still "not sampled"
        assert sampled_out["result"] == f"00-{TRACE}-{PARENT}-00"
        # sampled: front's client span is the back app's parent
        (call,) = [s for s in front_tel.spans("echoes.traceparent") if s.kind is SpanKind.CLIENT]
        assert sampled["result"] == f"00-{TRACE}-{call.context.span_id:016x}-01"
        assert {s.context.trace_id for s in front_tel.spans() + back_tel.spans()} == {int(TRACE, 16)}
        assert len(back_tel.spans("POST /public/rpc")) == 1  # only the sampled request's
