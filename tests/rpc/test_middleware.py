"""RPC middleware: one chain around every call, from every transport."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kaiju import rpc
from kaiju.config.errors import ConfigError
from kaiju.rpc import RPCServer
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.service import SettingError
from kaiju.testing import eventually
from kaiju.testing.services import started
from tests.rpc import middleware_sample
from tests.rpc.conftest import Calc

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "tests.rpc.middleware_sample"


def request(method: str, params: Any = None, id: Any = 1) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


async def test_middleware_wraps_in_order_and_may_change_params_and_results():
    order: list[str] = []

    async def outer(call, call_next):
        order.append(f"outer {call.method} {call.transport}")
        return {"wrapped": await call_next(call)}

    async def inner(call, call_next):
        order.append(f"inner {call.params}")
        call.params = {**call.params, "b": 10}
        return await call_next(call)

    server = RPCServer(middleware=[outer, inner])
    async with started(Calc(), server):
        body, headers = await server.handle(request("calc.sum", {"a": 1}))
        assert json.loads(body)["result"] == {"wrapped": 11}
        assert await server.call("calc.sum", {"a": 2}) == {"wrapped": 12}
    assert order == ["outer calc.sum internal", "inner {'a': 1, 'b': 0, 'c': 0}", "outer calc.sum internal", "inner {'a': 2, 'b': 0, 'c': 0}"]


async def test_middleware_sees_batch_items_nested_calls_and_notifications():
    seen: list[tuple[str, Any]] = []

    async def note(call, call_next):
        seen.append((call.method, call.request_id))
        return await call_next(call)

    calc = Calc()
    server = RPCServer(middleware=[note])
    async with started(calc, server):
        batch = b"[" + request("calc.sum", {"a": 1}, 1) + b"," + request("calc.get_data", None, 2) + b"]"
        body, _ = await server.handle(batch)
        assert [r["id"] for r in json.loads(body)] == [1, 2]
        await server.handle(b'{"jsonrpc":"2.0","method":"calc.notify_hello","params":{"value":3}}')
        await eventually(lambda: calc.notified == [3], what="the notification")
    assert ("calc.sum", 1) in seen and ("calc.get_data", 2) in seen and ("calc.notify_hello", None) in seen


async def test_a_middleware_refusal_is_answered_like_any_error_and_runs_nothing():
    sample = middleware_sample.Sample()
    server = RPCServer(middleware=[f"{SAMPLE}:stamp"])
    async with started(sample, server):
        body, _ = await server.handle(request("sample.forbidden"))
        error = json.loads(body)["error"]
        assert error["data"]["type"] == "PermissionDenied" and error["message"] == "refused by a middleware"
        with pytest.raises(rpc.PermissionDenied):
            await server.call("sample.forbidden")
    assert sample.ran == []


async def test_params_a_middleware_reads_are_validated_first():
    async def reader(call, call_next):
        call.params  # noqa: B018 -- reading validates
        return await call_next(call)

    server = RPCServer(middleware=[reader])
    async with started(Calc(), server):
        body, _ = await server.handle(request("calc.sum", {"a": "x"}))
        assert json.loads(body)["error"]["data"]["type"] == "InvalidParams"


async def test_a_middleware_failing_on_its_own_is_an_internal_error():
    async def broken(call, call_next):
        raise KeyError("oops")

    server = RPCServer(middleware=[broken])
    async with started(Calc(), server):
        body, _ = await server.handle(request("calc.get_data"))
        assert json.loads(body)["error"]["data"]["type"] == "InternalError"


async def test_response_headers_set_by_a_middleware_are_answered():
    async def tag(call, call_next):
        call.response_headers["X-Served-By"] = "mw"
        return await call_next(call)

    server = RPCServer(middleware=[tag])
    async with started(Calc(), server):
        answer = await server.handle(request("calc.get_data"))
        assert answer.headers["X-Served-By"] == "mw" and answer.outcomes == ["ok"]


def test_a_middleware_entry_that_does_not_load_is_a_setting_error():
    for entry, why in ((f"{SAMPLE}:missing", "missing"), ("no_colon", "module:callable"), (f"{SAMPLE}:not_async", "async")):
        with pytest.raises(SettingError, match=why) as caught:
            RPCServer(middleware=[entry]).check()
        assert caught.value.key == "middleware"


def test_kaiju_run_check_names_the_middleware_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"services\[RPCServer\]\.settings\.middleware: entry 0"):
        Entrypoint(config={"main": {"name": "t"}, "services": [{"cls": "RPCServer", "settings": {"middleware": ["nope"]}}]})


async def test_a_configured_middleware_sees_http_tasks_and_streams_with_their_transport():
    middleware_sample.SEEN.clear()
    config = {
        "main": {"name": "mw", "env": "test"},
        "services": [
            {"cls": "RPCServer", "settings": {"middleware": [f"{SAMPLE}:record", f"{SAMPLE}:stamp"]}},
            {"cls": f"{SAMPLE}:Sample"},
            {"cls": "HTTPServer", "settings": {"port": 0}},
            {"cls": "PeriodicTask", "name": "ping", "settings": {"interval": 0.05, "method": "sample.whoami"}},
            {"cls": "MemoryStream"},
            {"cls": "Streams"},
            {"cls": "StreamListener", "settings": {"block_ms": 50}},
            {"cls": "StreamProducer"},
        ],
    }
    async with Entrypoint(config=config, catch_signals=(), log_config=False) as ep:
        http, producer = ep.app.services["http"], ep.app.services["stream_producer"]
        async with aiohttp.ClientSession() as session:
            json = {"Content-Type": "application/json"}
            async with session.post(http.url, data=request("sample.whoami"), headers=json) as response:
                assert (await response.json())["result"] == {"transport": "http", "result": "sample"}
            async with session.post(http.url, data=request("sample.forbidden"), headers=json) as response:
                assert (await response.json())["error"]["data"]["type"] == "PermissionDenied"
        await producer.call("sample.whoami")
        await eventually(
            lambda: {"http", "task", "stream"} <= {t for m, t in middleware_sample.SEEN if m == "sample.whoami"},
            what="a call from each transport",
        )


def test_kaiju_run_call_goes_through_the_configured_middleware(tmp_path):
    config = tmp_path / "app.yml"
    config.write_text(
        "main: {name: mw}\n"
        "services:\n"
        f"  - cls: RPCServer\n    settings: {{middleware: ['{SAMPLE}:stamp']}}\n"
        f"  - cls: {SAMPLE}:Sample\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "kaiju", "-c", str(config), "call", "sample.whoami"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"transport": "internal", "result": "sample"}
    refused = subprocess.run([sys.executable, "-m", "kaiju", "-c", str(config), "call", "sample.forbidden"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "PermissionDenied" in refused.stdout + refused.stderr


async def test_refused_requests_take_the_chain_under_a_bounded_name():
    seen: list[tuple[str, Any, bool, str]] = []

    async def note(call, call_next):
        try:
            return await call_next(call)
        except rpc.RPCError as exc:
            seen.append((call.method, call.request_id, call.ran, exc.type))
            raise

    server = RPCServer(middleware=[note])
    async with started(Calc(), server):
        assert (await server.handle(request("no.such.method", id=7))).outcomes == ["MethodNotFound"]
        assert (await server.handle(b'{"jsonrpc": "2.0", "id": 8}')).outcomes == ["InvalidRequest"]
        assert (await server.handle(b"{not json")).outcomes == ["JSONParseError"]
        assert (await server.handle(b"[1, {oops")).outcomes == ["JSONParseError"]
        batch = b'[' + request("calc.sum", {"a": 1}, id=1) + b', 5, ' + request("nope", id=3) + b']'
        assert (await server.handle(batch)).outcomes == ["ok", "InvalidRequest", "MethodNotFound"]
        assert (await server.handle(request("calc.sum", {"a": 1}), {"Timeout": "soon"})).outcomes == [
            "InvalidRequest"
        ]
        with pytest.raises(rpc.MethodNotFound):
            await server.call("calc.nothing")
    assert seen == [
        ("<unknown>", 7, False, "MethodNotFound"),
        ("<invalid>", 8, False, "InvalidRequest"),
        ("<invalid>", None, False, "JSONParseError"),
        ("<invalid>", None, False, "JSONParseError"),
        ("<invalid>", None, False, "InvalidRequest"),
        ("<unknown>", 3, False, "MethodNotFound"),
        ("<invalid>", None, False, "InvalidRequest"),
        ("<unknown>", None, False, "MethodNotFound"),
    ]
