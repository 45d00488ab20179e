"""RPCServer: kaiju-tools' RPC cases, errors, limits and context."""

from __future__ import annotations

import asyncio
import re
import time

import msgspec
import pytest

from kaiju import rpc
from kaiju.rpc import RPCServer, Scope, Session
from kaiju.rpc.context import current, log_fields
from kaiju.runtime.service import Service
from kaiju.testing import eventually
from kaiju.testing.services import started
from tests.rpc.conftest import Calc, decode


class Gate(Service):
    """`gate.hold` runs until the test opens the gate (a slot held for as long as needed);
    `gate.note` records the order calls ran in."""

    service_name = "gate"

    async def start(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.notes: list[int] = []

    @rpc.method(permission=Scope.GUEST)
    async def hold(self) -> str:
        self.entered.set()
        await self.open.wait()
        return "released"

    @rpc.method(permission=Scope.GUEST)
    async def note(self, value: int) -> int:
        self.notes.append(value)
        return value


def request(method: str, params=None, id=1) -> dict:
    body = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return body


async def handle(server, body, headers=None, **kw):
    response, out = await server.handle(body, headers, **kw)
    return decode(response) if isinstance(response, bytes) else response, out


# -- calls ---------------------------------------------------------------


async def test_call_returns_result(server):
    assert await server.call("calc.sum", {"a": 1, "b": 2}) == 3
    assert await server.call("calc.sum", [1, 2, 3]) == 6


async def test_handle_accepts_decoded_objects(server):
    response, _ = await handle(server, request("calc.sum", {"a": 1, "b": 2}))
    assert response == {"jsonrpc": "2.0", "id": 1, "result": 3}
    response, _ = await handle(server, [request("calc.sum", [1], 1), request("calc.sum", [2], 2)])
    assert [r["result"] for r in response] == [1, 2]


async def test_struct_params_are_validated_and_built(server):
    result = await server.call("calc.items", {"items": [{"name": "a", "qty": 2}, {"name": "b"}]})
    assert result == {"count": 3, "names": ["a", "b"], "secret": "kept"}


async def test_underscore_params_are_dropped(server):
    result = await server.call("calc.items", {"items": [], "_secret": "leak"})
    assert result["secret"] == "kept"


async def test_kwargs_method_takes_unknown_names(server):
    assert await server.call("calc.options", {"key": "k", "x": 1}) == {"key": "k", "x": 1}


async def test_correlation_id_is_generated_or_echoed(server):
    _, out = await handle(server, b'{"jsonrpc":"2.0","id":1,"method":"calc.get_data"}')
    _, out2 = await handle(server, b'{"jsonrpc":"2.0","id":1,"method":"calc.get_data"}')
    assert out["Correlation-Id"] and out["Correlation-Id"] != out2["Correlation-Id"]
    response, out = await handle(server, request("calc.context"), {"Correlation-Id": "abc-123"})
    assert out["Correlation-Id"] == "abc-123" and response["result"]["correlation_id"] == "abc-123"


async def test_correlation_id_on_a_plain_request_as_bytes(server):
    body = b'{"jsonrpc":"2.0","id":1,"method":"calc.context"}'
    response, out = await handle(server, body, {"correlation-id": "abc-124", "Message-Id": "s/1-0"})
    assert out["Correlation-Id"] == "abc-124" and response["result"]["correlation_id"] == "abc-124"
    for bad in ({"Correlation-Id": " padded "}, {"Correlation-Id": "bad id"}, {"Correlation-Id": "a", "correlation-id": "b"}):
        response, _ = await handle(server, body, bad)
        if " padded " in bad.values():  # stripped, as the general path reads it
            assert response["result"]["correlation_id"] == "padded"
        elif len(bad) == 1:
            assert response["error"]["code"] == -32600
        else:
            assert response["result"]["correlation_id"] in ("a", "b")


# -- errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "params, field",
    [
        ({"minuend": "x", "subtrahend": 1}, "minuend"),
        ({"minuend": 1}, "subtrahend"),
        ({"minuend": 1, "subtrahend": 2, "other": 3}, "other"),
        (["x", 1], "minuend"),
        ([1, 2, 3], None),
    ],
)
async def test_invalid_params_name_the_field(server, params, field):
    response, _ = await handle(server, request("calc.subtract", params))
    error = response["error"]
    assert error["code"] == -32602 and error["data"]["type"] == "InvalidParams"
    assert error["data"]["field"] == field and error["data"]["reason"]
    with pytest.raises(rpc.InvalidParams):
        await server.call("calc.subtract", params)


async def test_nested_struct_error_has_path(server):
    response, _ = await handle(server, request("calc.items", {"items": [{"name": 1}]}), scope=Scope.USER)
    assert response["error"]["data"]["field"] == "items[0].name"


async def test_method_exception_is_internal_error_without_traceback(server):
    response, _ = await handle(server, request("calc.fail"))
    error = response["error"]
    assert error["code"] == -32603 and error["data"]["type"] == "InternalError"
    assert "traceback" not in error["data"] and "boom" not in str(error)
    with pytest.raises(rpc.InternalError) as info:
        await server.call("calc.fail", {"message": "bad"})
    assert isinstance(info.value.base_exc, ValueError) and str(info.value.base_exc) == "bad"


async def test_debug_sends_traceback_in_env_dev_only(calc, caplog):
    from kaiju.runtime.service import App

    srv = RPCServer(debug=True)
    async with started(calc, srv, app=App(name="t", env="dev")):
        response, _ = await handle(srv, request("calc.fail"))
    assert response["error"]["data"]["base_exc_type"] == "ValueError"
    assert "boom" in response["error"]["data"]["traceback"]
    srv = RPCServer(debug=True)
    async with started(calc, srv, app=App(name="t", env="prod")):
        response, _ = await handle(srv, request("calc.fail"))
    # outside dev a caller never sees a traceback, and the log says why debug is off
    assert "traceback" not in response["error"]["data"] and "base_exc_type" not in response["error"]["data"]
    assert any("tracebacks are sent to callers in env dev only" in r.getMessage() for r in caplog.records)


async def test_method_raising_rpc_error_keeps_its_type(server):
    response, _ = await handle(server, request("calc.refuse"))
    assert response["error"]["data"]["type"] == "PermissionDenied" and response["error"]["message"] == "not yours"


async def test_unencodable_result_is_internal_error(server):
    response, _ = await handle(server, request("calc.obj"))
    assert response["error"]["code"] == -32603 and response["id"] == 1


@pytest.mark.parametrize(
    "headers",
    [{"Timeout": "abc"}, {"Timeout": "-1"}, {"Deadline": "soon"}, {"RPC-Retries": "x"}, {"RPC-Batch-Abort-Error": "maybe"}],
)
async def test_malformed_header_is_invalid_request(server, headers):
    response, out = await handle(server, request("calc.get_data"), headers)
    assert response["error"]["code"] == -32600 and response["error"]["data"]["header"] in headers
    assert out["Correlation-Id"]
    with pytest.raises(rpc.InvalidRequest):
        await server.call("calc.get_data", headers=headers)


async def test_a_malformed_header_answers_each_request_of_a_batch(server):
    batch = b'[{"jsonrpc":"2.0","id":1,"method":"calc.get_data"},{"jsonrpc":"2.0","method":"calc.get_data"},5]'
    out, _ = await server.handle(batch, {"Timeout": "abc"})
    answers = msgspec.json.decode(out)
    assert [a["id"] for a in answers] == [1, None]
    assert {a["error"]["data"]["type"] for a in answers} == {"InvalidRequest"}


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: b.decode(), lambda b: b" \n" + b])
async def test_any_json_text_is_a_body(server, kind):
    single = b'{"jsonrpc":"2.0","id":1,"method":"calc.sum","params":[1,2]}'
    out, _ = await server.handle(kind(single))
    assert msgspec.json.decode(out) == {"jsonrpc": "2.0", "id": 1, "result": 3}
    out, _ = await server.handle(kind(b"[" + single + b"]"))
    assert msgspec.json.decode(out) == [{"jsonrpc": "2.0", "id": 1, "result": 3}]


async def test_bad_params_type_is_invalid_request(server):
    response, _ = await handle(server, b'{"jsonrpc":"2.0","id":1,"method":"calc.get_data","params":5}')
    assert response["error"]["code"] == -32600


# -- permissions ---------------------------------------------------------


@pytest.mark.parametrize(
    "scope, allowed",
    [
        (Scope.GUEST, set()),
        (Scope.USER, set()),
        (Scope.ADMIN, {"calc.admin_only"}),
        (Scope.SYSTEM, {"calc.admin_only", "calc.system_only"}),
    ],
)
async def test_scope_decides_what_is_callable(server, scope, allowed):
    for name in ("calc.admin_only", "calc.system_only"):
        response, _ = await handle(server, request(name), scope=scope)
        if name in allowed:
            assert "result" in response
        else:
            assert response["error"]["data"]["type"] == "MethodNotFound"


async def test_session_grants_methods_and_services(server):
    guest = Session(id="s1", scope=Scope.GUEST)
    response, _ = await handle(server, request("calc.system_only"), session=guest)
    assert response["error"]["code"] == -32601
    for grant in ("calc.system_only", "calc", "calc.*"):
        session = Session(id="s2", scope=Scope.GUEST, permissions=frozenset({grant}))
        response, _ = await handle(server, request("calc.system_only"), session=session)
        assert response["result"] == "system", grant


async def test_session_scope_and_context(server):
    session = Session(id="sess", user_id=7, scope=Scope.USER)
    response, _ = await handle(server, request("calc.context"), session=session)
    assert response["result"]["scope"] == "USER" and response["result"]["session"] == "sess"
    response, _ = await handle(server, request("calc.items", {"items": []}), session=session)
    assert "result" in response


async def test_permissions_can_be_disabled(calc):
    srv = RPCServer(enable_permissions=False)
    async with started(calc, srv):
        response, _ = await handle(srv, request("calc.system_only"), scope=Scope.GUEST)
    assert response["result"] == "system"


# -- batches -------------------------------------------------------------


async def test_batch_abort_on_error(server):
    batch = [request("calc.sum", [1], 1), request("calc.fail", None, 2), request("calc.sum", [3], 3), request("calc.sum", [4], 4)]
    response, _ = await handle(server, batch, {"RPC-Batch-Abort-Error": "?1"})
    assert response[0]["result"] == 1
    assert response[1]["error"]["data"]["type"] == "InternalError"
    assert [r["error"]["data"]["type"] for r in response[2:]] == ["Aborted", "Aborted"]
    assert [r["id"] for r in response] == [1, 2, 3, 4]


async def test_batch_without_abort_runs_everything(server):
    batch = [request("calc.fail", None, 1), request("calc.sum", [3], 2)]
    response, _ = await handle(server, batch)
    assert "error" in response[0] and response[1]["result"] == 3


async def test_batch_templates(server):
    batch = [
        request("calc.sum", {"a": 1, "b": 2}, 1),
        request("calc.sum", {"a": "[0]", "b": 10}, 2),
        request("calc.get_data", None, 3),
        request("calc.sum", {"a": "[2.1]", "b": "[1]"}, 4),
    ]
    response, _ = await handle(server, msgspec_bytes(batch), {"RPC-Batch-Template": "?1"})
    assert [r["result"] for r in response[:2]] == [3, 13]
    assert response[3]["result"] == 18


async def test_batch_template_to_missing_result(server):
    batch = [request("calc.fail", None, 1), request("calc.sum", {"a": "[0]"}, 2)]
    response, _ = await handle(server, batch, {"RPC-Batch-Template": "?1"})
    assert response[1]["error"]["code"] == -32602


async def test_batch_item_past_the_deadline_times_out_alone(server):
    batch = [request("calc.sleep", [0], 1), request("calc.sleep", [5], 2), request("calc.sum", [1], 3)]
    response, _ = await asyncio.wait_for(handle(server, batch, {"Timeout": 0.1}), 5)
    assert response[0]["result"] == 0 and response[2]["result"] == 1
    assert response[1]["error"]["data"]["type"] == "RequestTimeout"


async def test_ordered_batch_aborts_after_a_timeout(server):
    batch = [request("calc.sleep", [5], 1), request("calc.sum", [1], 2)]
    response, _ = await asyncio.wait_for(handle(server, batch, {"Timeout": "0.1", "RPC-Batch-Abort-Error": "?1"}), 5)
    assert [r["error"]["data"]["type"] for r in response] == ["RequestTimeout", "Aborted"]


async def test_batch_size_limit(calc):
    srv = RPCServer(max_batch_size=2)
    async with started(calc, srv):
        response, _ = await handle(srv, [request("calc.get_data", None, i) for i in range(3)])
    assert response["error"]["code"] == -32600


async def test_batch_runs_concurrently(server):
    # each call returns only once all 8 are running: a batch run one by one never ends
    batch = [request("calc.meet", [8], i) for i in range(8)]
    response, _ = await asyncio.wait_for(handle(server, batch, {"Timeout": "5"}), 10)
    assert [r.get("result") for r in response] == [8] * 8


# -- time ----------------------------------------------------------------


async def test_timeout_header_cancels_method(server):
    response, _ = await asyncio.wait_for(handle(server, request("calc.sleep", [10]), {"Timeout": "0.05"}), 5)
    assert response["error"]["code"] == -32002 and response["error"]["data"]["type"] == "RequestTimeout"


async def test_timeout_and_deadline_together_the_earlier_wins(server):
    far = str(time.time() + 100)
    headers = {"Timeout": "0.05", "Deadline": far}
    response, _ = await asyncio.wait_for(handle(server, request("calc.sleep", [10]), headers), 5)
    assert response["error"]["data"]["type"] == "RequestTimeout"
    near = str(time.time() + 0.05)
    response, _ = await asyncio.wait_for(handle(server, request("calc.sleep", [10]), {"Timeout": "100", "Deadline": near}), 5)
    assert response["error"]["data"]["type"] == "RequestTimeout"


async def test_calls_from_a_request_context_outside_the_dispatcher_take_slots(calc):
    from kaiju.rpc.context import current, request_context

    srv = RPCServer(max_parallel_tasks=1)

    async def job(n):
        with request_context(correlation_id=f"job-{n}") as ctx:
            assert current() is ctx
            return await srv.call("calc.track", [0.02])

    async with started(calc, srv):
        await asyncio.wait_for(asyncio.gather(*(job(n) for n in range(5))), 10)
    assert calc.most_active == 1  # bounded like any caller, not waved through as "nested"
    assert current() is None


async def test_deadline_header(server):
    deadline = str(time.time() + 0.05)
    response, _ = await asyncio.wait_for(handle(server, request("calc.sleep", [10]), {"Deadline": deadline}), 5)
    assert response["error"]["data"]["type"] == "RequestTimeout"
    response, _ = await handle(server, request("calc.sleep", [0]), {"Deadline": str(time.time() - 1)})
    assert response["error"]["data"]["type"] == "RequestTimeout"


async def test_default_time_watched_by_shared_tick(calc):
    # a default request time above watchdog_threshold: enforced by the shared tick, not a timer per call
    srv = RPCServer(default_request_time=0.3, watchdog_threshold=0.2)
    async with started(calc, srv):
        response, _ = await asyncio.wait_for(handle(srv, b'{"jsonrpc":"2.0","id":1,"method":"calc.sleep","params":[10]}'), 5)
        assert response["error"]["data"]["type"] == "RequestTimeout"
        assert asyncio.current_task().cancelling() == 0
        response, _ = await handle(srv, b'{"jsonrpc":"2.0","id":2,"method":"calc.sleep","params":[0.01]}')
        assert response["result"] == 0.01
        with pytest.raises(rpc.RequestTimeout):
            await asyncio.wait_for(srv.call("calc.sleep", [10]), 5)


async def test_outer_cancellation_is_not_a_timeout(server):
    task = asyncio.ensure_future(server.handle(b'{"jsonrpc":"2.0","id":1,"method":"calc.sleep","params":[10]}'))

    async def sleeping() -> bool:  # calc.sleep and rpc.status itself
        return (await server.call("rpc.status"))["running"] == 2

    await eventually(sleeping, what="calc.sleep to run")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    status = await server.call("rpc.status")
    assert status["running"] == 1 and status["in_flight"] == 1  # only rpc.status itself


async def test_retries(server, calc):
    response, _ = await handle(server, request("calc.flaky", [2]), {"RPC-Retries": "3"})
    assert response["result"] == 3
    calc.flaky_calls = 0
    response, _ = await handle(server, request("calc.flaky", [2]), {"RPC-Retries": "1"})
    assert response["error"]["data"]["type"] == "InternalError"
    calc.flaky_calls = 0
    response, _ = await handle(server, request("calc.flaky", [1]))
    assert response["error"]["data"]["type"] == "InternalError"


async def test_retries_above_max_retries_are_capped(calc):
    async with started(calc, RPCServer(max_retries=2)) as app:
        response, _ = await handle(app.services["rpc"], request("calc.flaky", [5]), {"RPC-Retries": "100"})
    assert response["error"]["data"]["type"] == "InternalError"
    assert calc.flaky_calls == 3  # the first try and max_retries more, not 100


# -- concurrency -----------------------------------------------------------


async def test_thousand_awaiting_calls_through_128_slots(calc):
    srv = RPCServer(max_parallel_tasks=128)
    async with started(calc, srv):
        body = b'{"jsonrpc":"2.0","id":1,"method":"calc.sleep","params":[0.001]}'
        results = await asyncio.wait_for(asyncio.gather(*(srv.handle(body) for _ in range(1000))), 20)
        assert all(b'"result":0.001' in r.body for r in results)
        calls = await asyncio.wait_for(asyncio.gather(*(srv.call("calc.sleep", [0]) for _ in range(1000))), 20)
        assert calls == [0] * 1000
        status = await srv.call("rpc.status")
        assert status["running"] == 1 and status["waiting"] == 0  # rpc.status itself


async def test_waiting_request_times_out_in_line(calc):
    srv, gate = RPCServer(max_parallel_tasks=1), Gate()
    async with started(calc, gate, srv):
        blocker = asyncio.ensure_future(srv.call("gate.hold"))
        await asyncio.wait_for(gate.entered.wait(), 5)  # the only slot is taken
        with pytest.raises(rpc.RequestTimeout):
            await asyncio.wait_for(srv.call("calc.sleep", [0], headers={"Timeout": "0.05"}), 5)
        gate.open.set()
        assert await asyncio.wait_for(blocker, 5) == "released"
        assert await srv.call("calc.sleep", [0]) == 0


async def test_slot_waiters_are_served_in_order():
    srv, gate = RPCServer(max_parallel_tasks=1), Gate()
    async with started(gate, srv):
        blocker = asyncio.ensure_future(srv.call("gate.hold"))
        await asyncio.wait_for(gate.entered.wait(), 5)
        line = []
        for i in range(5):
            line.append(asyncio.ensure_future(srv.call("gate.note", [i])))
            await eventually(lambda: srv.executor.slots.waiting == i + 1, what=f"call {i} to wait in line")
        gate.open.set()
        assert await asyncio.wait_for(asyncio.gather(blocker, *line), 5) == ["released", 0, 1, 2, 3, 4]
    assert gate.notes == [0, 1, 2, 3, 4]


# -- context -------------------------------------------------------------


async def test_nested_call_gets_own_context_and_restores_callers(server):
    result = await server.call("calc.nested", headers={"Correlation-Id": "outer"})
    assert result["before"] == ("outer", "calc.nested") and result["after"] == ("outer", "calc.nested")
    assert result["same"] and result["inner"]["method"] == "calc.context"
    assert result["inner"]["correlation_id"] == "outer"  # inherited: one trace
    result = await server.call("calc.nested", {"inner_headers": {"Correlation-Id": "inner"}})
    assert result["inner"]["correlation_id"] == "inner" and result["after"][1] == "calc.nested"


async def test_nested_call_keeps_callers_deadline(server):
    result = await server.call("calc.nested", headers={"Timeout": "2"})
    assert 0 < result["inner"]["time_left"] <= 2


async def test_nested_call_under_one_slot_does_not_deadlock(calc):
    srv = RPCServer(max_parallel_tasks=1)
    calc.rpc_server = srv
    async with started(calc, srv):
        result = await asyncio.wait_for(srv.call("calc.nested"), 5)
    assert result["inner"]["method"] == "calc.context"


async def test_context_outside_request(server):
    assert current() is None and log_fields() is None
    await server.call("calc.get_data")
    assert current() is None


async def test_log_fields_inside_request(calc):
    seen = {}

    class Probe(Calc):
        service_name = "probe"

        @rpc.method
        async def probe(self) -> None:
            seen.update(log_fields())

    srv = RPCServer()
    async with started(Probe(), srv):
        await srv.call("probe.probe", headers={"Correlation-Id": "cid-1"})
    assert seen == {"correlation_id": "cid-1"}


# -- introspection ---------------------------------------------------------


async def test_api_lists_what_the_caller_may_call(server):
    response, _ = await handle(server, request("rpc.api"))
    names = {m["name"] for m in response["result"]["methods"]}
    assert "calc.subtract" in names and "calc.system_only" not in names and "rpc.status" not in names
    subtract = next(m for m in response["result"]["methods"] if m["name"] == "calc.subtract")
    assert subtract["params"][0] == {"name": "minuend", "type": "int", "required": True}
    everything = await server.call("rpc.api", {"pattern": "calc.*"})
    assert {"calc.system_only", "calc.admin_only"} <= {m["name"] for m in everything["methods"]}


async def test_status_and_tasks_are_system_only(server):
    for name in ("rpc.status", "rpc.tasks"):
        response, _ = await handle(server, request(name))
        assert response["error"]["code"] == -32601
    status = await server.call("rpc.status")
    assert status["max_parallel_tasks"] == 16 and status["methods"] > 10
    tasks = await server.call("rpc.tasks")
    assert [t["method"] for t in tasks] == ["rpc.tasks"]


async def test_discover_is_openrpc(server):
    doc = await server.call("rpc.discover")
    assert doc["openrpc"].startswith("1.") and doc["info"]["title"] == "test"
    subtract = next(m for m in doc["methods"] if m["name"] == "calc.subtract")
    assert [p["name"] for p in subtract["params"]] == ["minuend", "subtrahend"]
    assert subtract["params"][0]["schema"] == {"type": "integer"} and subtract["params"][0]["required"]
    assert subtract["result"]["schema"] == {"type": "integer"}
    assert subtract["paramStructure"] == "either"
    items = next(m for m in doc["methods"] if m["name"] == "calc.items")
    assert "$ref" in str(items["params"][0]["schema"]) and "Item" in doc["components"]["schemas"]
    guest_doc, _ = await handle(server, request("rpc.discover"))
    assert "calc.items" not in {m["name"] for m in guest_doc["result"]["methods"]}


async def test_describe_and_list_methods_for_the_cli(server):
    described = {d["name"]: d for d in server.describe()}
    assert described["calc.subtract"]["permission"] == "guest"
    assert described["calc.system_only"]["permission"] == "system"
    assert [m.name for m in server.list_methods(Scope.GUEST)] == sorted(m.name for m in server.list_methods(Scope.GUEST))


# -- registration ----------------------------------------------------------


def test_method_decorator_needs_async():
    with pytest.raises(TypeError):

        @rpc.method
        def sync(self):
            pass


def test_method_decorator_scope_by_name():
    @rpc.method(permission="guest")
    async def f(self):
        pass

    from kaiju.rpc.methods import method_spec

    assert method_spec(f).permission is Scope.GUEST


async def test_add_service_later_and_duplicates(server):
    class Later(Calc):
        service_name = "later"

    later = Later()
    added = server.add_service(later)
    assert "later.subtract" in added
    assert await server.call("later.subtract", [3, 1]) == 2
    other = Later()
    with pytest.raises(ValueError):
        server.add_service(other)
    server.remove_service("later")
    with pytest.raises(rpc.MethodNotFound):
        await server.call("later.subtract", [3, 1])


async def test_calls_before_start_say_so():
    srv = RPCServer()
    with pytest.raises(RuntimeError, match="not started"):
        await srv.call("rpc.status")
    with pytest.raises(RuntimeError, match="not started"):
        await srv.handle(b'{"jsonrpc":"2.0","id":1,"method":"rpc.status"}')


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"max_parallel_tasks": 0}, "services[RPCServer].settings.max_parallel_tasks: expected int >= 1, got 0"),
        ({"default_request_time": 0}, "services[RPCServer].settings.default_request_time: expected float > 0"),
        ({"default_request_time": 700}, "default_request_time: expected at most max_request_time (600.0), got 700"),
    ],
)
def test_bad_settings_are_config_errors(settings, expected):
    from kaiju.config import ConfigError, load_config_data
    from kaiju.runtime.plan import build_plan

    data = {"main": {"name": "t"}, "services": [{"cls": "RPCServer", "settings": settings}]}
    with pytest.raises(ConfigError, match=re.escape(expected)):
        build_plan(load_config_data(data, source="app.yml", os_env=False))


def msgspec_bytes(obj) -> bytes:
    import msgspec

    return msgspec.json.encode(obj)


# -- the hot path (plain bytes, no kaiju headers) falls back correctly ------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"calc.sum","params":{"a":1,"_x":9}}', 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"calc.sum","params":[1,2]}', 3),
        (b'{"id":1,"method":"calc.sum","params":{"a":2},"jsonrpc":"2.0","extra":true}', 2),
        (b'{"jsonrpc":"2.0","id":1,"method":"calc.update"}', None),
        (b'{"jsonrpc":"2.0","id":1,"method":"calc.update","params":null}', None),
        (b'{"jsonrpc":"2.0","id":1,"method":"calc.get_data","params":{}}', ["hello", 5]),
    ],
)
async def test_plain_requests(server, body, expected):
    response, _ = await handle(server, body)
    assert response == {"jsonrpc": "2.0", "id": 1, "result": expected}


async def test_plain_request_missing_required_params(server):
    response, _ = await handle(server, b'{"jsonrpc":"2.0","id":"x","method":"calc.subtract"}')
    assert response["id"] == "x" and response["error"]["data"]["field"] == "minuend"


async def test_plain_request_ids(server):
    for raw_id, expected in ((b'"abc"', "abc"), (b"1.5", 1.5), (b"null", None)):
        response, _ = await handle(server, b'{"jsonrpc":"2.0","method":"calc.get_data","id":' + raw_id + b"}")
        assert response["id"] == expected and response["result"] == ["hello", 5]
    response, _ = await handle(server, b'{"jsonrpc":"2.0","method":"calc.get_data","id":{"a":1}}')
    assert response["id"] is None and response["error"]["code"] == -32600
