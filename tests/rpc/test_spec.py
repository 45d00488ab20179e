"""The examples of the JSON-RPC 2.0 specification (jsonrpc.org/specification#examples)."""

from __future__ import annotations

import asyncio

from tests.rpc.conftest import decode


async def call(server, body: bytes):
    response, headers = await server.handle(body)
    assert headers["Correlation-Id"]
    return decode(response)


async def test_positional_parameters(server):
    assert await call(server, b'{"jsonrpc": "2.0", "method": "calc.subtract", "params": [42, 23], "id": 1}') == {
        "jsonrpc": "2.0", "result": 19, "id": 1}
    assert await call(server, b'{"jsonrpc": "2.0", "method": "calc.subtract", "params": [23, 42], "id": 2}') == {
        "jsonrpc": "2.0", "result": -19, "id": 2}


async def test_named_parameters(server):
    body = b'{"jsonrpc": "2.0", "method": "calc.subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    assert await call(server, body) == {"jsonrpc": "2.0", "result": 19, "id": 3}
    body = b'{"jsonrpc": "2.0", "method": "calc.subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}'
    assert await call(server, body) == {"jsonrpc": "2.0", "result": 19, "id": 4}


async def test_notification_gets_no_response_but_runs(server, calc):
    assert await call(server, b'{"jsonrpc": "2.0", "method": "calc.update", "params": [1,2,3,4,5]}') is None
    assert await call(server, b'{"jsonrpc": "2.0", "method": "calc.notify_hello", "params": [7]}') is None
    for _ in range(100):
        if len(calc.notified) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(map(str, calc.notified)) == ["7", "[1, 2, 3, 4, 5]"]


async def test_non_existent_method(server):
    response = await call(server, b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert response["id"] == "1" and response["jsonrpc"] == "2.0"
    assert response["error"]["code"] == -32601 and response["error"]["data"]["type"] == "MethodNotFound"


async def test_invalid_json(server):
    response = await call(server, b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert response["id"] is None and response["error"]["code"] == -32700
    assert response["error"]["data"]["type"] == "JSONParseError"


async def test_invalid_request_object(server):
    response = await call(server, b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert response["id"] is None and response["error"]["code"] == -32600
    assert response["error"]["data"]["type"] == "InvalidRequest"


async def test_batch_invalid_json(server):
    body = b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method"]'
    response = await call(server, body)
    assert isinstance(response, dict) and response["error"]["code"] == -32700 and response["id"] is None


async def test_empty_array(server):
    response = await call(server, b"[]")
    assert isinstance(response, dict) and response["error"]["code"] == -32600 and response["id"] is None


async def test_invalid_batch_not_empty(server):
    response = await call(server, b"[1]")
    assert response == [{"jsonrpc": "2.0", "id": None, "error": response[0]["error"]}]
    assert response[0]["error"]["code"] == -32600


async def test_invalid_batch(server):
    response = await call(server, b"[1,2,3]")
    assert len(response) == 3
    assert all(r["error"]["code"] == -32600 and r["id"] is None for r in response)


async def test_mixed_batch(server):
    body = b"""[
        {"jsonrpc": "2.0", "method": "calc.sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "calc.notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "calc.subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "calc.get_data", "id": "9"}
    ]"""
    response = await call(server, body)
    assert [r.get("id") for r in response] == ["1", "2", None, "5", "9"]
    assert response[0]["result"] == 7 and response[1]["result"] == 19
    assert response[2]["error"]["code"] == -32600
    assert response[3]["error"]["code"] == -32601
    assert response[4]["result"] == ["hello", 5]


async def test_batch_of_notifications_only(server):
    body = b"""[
        {"jsonrpc": "2.0", "method": "calc.notify_hello", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "calc.notify_hello", "params": [7]}
    ]"""
    assert await call(server, body) is None


async def test_jsonrpc_version_is_required(server):
    response = await call(server, b'{"method": "calc.get_data", "id": 1}')
    assert response["error"]["code"] == -32600 and response["id"] == 1
