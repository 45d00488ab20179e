"""Property-based fuzzing of the dispatcher with hypothesis: hostile bytes and headers into
`RPCServer.handle`; every answer is a valid JSON-RPC answer (nothing for a notification),
never an InternalError, never an exception. Bounded example counts keep it to seconds;
bench/fuzz_http.py throws far more at a real HTTP server.

The work a request leaves running (notifications) is awaited after each example and must
end without an exception and without logging a warning or an error."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiju.rpc import RPCServer, Scope, method
from kaiju.runtime.service import Service
from kaiju.testing.services import started
from tests.rpc.fuzzing import HEADER_NAMES, HOSTILE, SEEDS, mutate, violation


class Echo(Service):
    service_name = "echo"

    async def start(self) -> None:
        pass

    @method(permission=Scope.GUEST)
    async def echo(self, data: object = None) -> object:
        return data


@pytest.fixture(scope="module")
def dispatch():
    """`dispatch(body, headers)`: the answer of a started RPCServer, on a loop of its own, once
    the work the request left running (its notifications) has finished; fails when that work
    raised, or anything was logged at WARNING or above or with a traceback meanwhile."""
    loop = asyncio.new_event_loop()
    tasks = TaskRecorder()
    loop.set_task_factory(tasks)
    server = RPCServer(default_request_time=5.0)
    context = started(Echo(), server)
    loop.run_until_complete(context.__aenter__())

    def run(body: bytes, headers: dict[str, str]) -> bytes | None:
        tasks.made.clear()
        logged = Recorded()
        logging.getLogger().addHandler(logged)  # each time: the root's handlers may be reset between tests
        try:
            answer, _ = loop.run_until_complete(server.handle(body, headers, scope=Scope.GUEST))
            problems = loop.run_until_complete(tasks.problems())
        finally:
            logging.getLogger().removeHandler(logged)
        problems += [f"logged {r.levelname}: {r.getMessage()}" for r in logged.records if r.levelno >= logging.WARNING or r.exc_info]
        assert not problems, (body[:300], problems)
        return answer

    yield run
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()


class TaskRecorder:
    """A task factory keeping every task the loop makes, so those a request leaves running
    in the background (its notifications) can be awaited and their outcomes read."""

    def __init__(self) -> None:
        self.made: list[asyncio.Task] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self.made.append(task)
        return task

    async def problems(self) -> list[str]:
        """Wait for every task made since `made` was cleared (and those they make); what went wrong in them."""
        found: list[str] = []
        while self.made:
            tasks = [task for task in self.made if task is not asyncio.current_task()]
            self.made.clear()
            _, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
            found += [f"still running after 10 s: {task!r}" for task in pending]
            found += [f"{task!r} raised {task.exception()!r}" for task in tasks if task.done() and not task.cancelled() and task.exception()]
        return found


class Recorded(logging.Handler):
    """Keeps the records it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


headers_st = st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(max_size=24), max_size=3)
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(seed=st.sampled_from(SEEDS), rng=st.randoms(use_true_random=False), headers=headers_st)
def test_mutated_requests_get_valid_answers(dispatch, seed, rng, headers):
    body = mutate(rng, seed)
    assert violation(body, None, dispatch(body, headers)) is None, body[:300]


@fuzz
@given(body=st.binary(max_size=200), headers=headers_st)
def test_any_bytes_get_valid_answers(dispatch, body, headers):
    assert violation(body, None, dispatch(body, headers)) is None, body[:300]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@fuzz
@given(
    rid=st.none() | st.integers() | st.text(max_size=8) | json_values,
    params=json_values,
    fragment=st.sampled_from(HOSTILE),
    where=st.sampled_from(["params", "id", "method", "extra"]),
    notify=st.booleans(),
)
def test_requests_with_a_hostile_fragment_in_one_field(dispatch, rid, params, fragment, where, notify):
    import msgspec

    fields = {"jsonrpc": b'"2.0"', "method": b'"echo.echo"', "params": msgspec.json.encode({"data": params})}
    if not notify:
        fields["id"] = msgspec.json.encode(rid)
    if where == "params":
        fields["params"] = b'{"data":' + fragment + b"}"
    elif where == "method":
        fields["method"] = b'"echo.' + fragment + b'"'
    else:
        fields[where] = fragment
    body = b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in fields.items()) + b"}"
    assert violation(body, None, dispatch(body, {})) is None, body[:300]


def test_the_invariant_catches_a_broken_answer():
    """The checker itself: it must be able to fail."""
    assert violation(SEEDS[0], None, None) == "no answer to a request"
    assert violation(SEEDS[2], None, b'{"jsonrpc":"2.0","id":null,"result":1}') == "an answer to a notification"
    internal = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x","data":{}}}'
    assert violation(SEEDS[0], None, internal).startswith("InternalError")
    assert violation(SEEDS[0], 500, b"{}") == "HTTP 500"
    assert mutate(random.Random(1), SEEDS[0]) != SEEDS[0]


def test_the_background_check_catches_a_failing_task():
    """The check of background work itself: it must be able to fail."""
    loop = asyncio.new_event_loop()
    tasks = TaskRecorder()
    loop.set_task_factory(tasks)

    async def later() -> None:
        await asyncio.sleep(0)
        raise ValueError("in the background")

    async def request() -> None:
        asyncio.get_running_loop().create_task(later())  # left running, like a notification

    try:
        loop.run_until_complete(request())
        problems = loop.run_until_complete(tasks.problems())
    finally:
        loop.close()
    assert len(problems) == 1 and "ValueError('in the background')" in problems[0], problems
