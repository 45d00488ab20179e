"""Listener retries with delays, the error types worth a retry, the concurrency bound, dead
letters that say why (and are listed, replayed once and purged), and a stop that hands back
what the listener holds: on memory and on Redis (standalone, Sentinel, Cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from kaiju import rpc
from kaiju.rpc import Scope
from kaiju.runtime.service import App, Service
from kaiju.streams.retries import Failure, retried, retry_delay
from kaiju.testing.services import started
from tests.streams.helpers import until


class Flaky(Service):
    """`flaky.run(key)` fails the first `failures[key]` times (with `errors[key]`), then succeeds;
    `flaky.step()` sleeps a little, noting how many steps run at once."""

    service_name = "flaky"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.failures: dict[str, int] = {}
        self.errors: dict[str, type[Exception]] = {}
        self.runs: list[str] = []
        self.now = self.most = 0

    async def start(self) -> None:
        pass

    @rpc.method
    async def run(self, key: str) -> str:
        self.runs.append(key)
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise self.errors.get(key, RuntimeError)(f"poison {key}")
        return key

    @rpc.method
    async def step(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.02)
        self.now -= 1
        self.runs.append("step")


def stack(make_stack, **settings):
    services, backend, (listener,), producer, rec = make_stack(**settings)
    flaky = Flaky()
    services.insert(-3, flaky)  # before the RPCServer, the listener and the producer
    return services, backend, listener, producer, flaky


def test_retry_delays_run_out_then_nothing_is_retried():
    assert retry_delay([1.0, 5.0], 1) == pytest.approx(1.0, abs=0.25)
    assert 5.0 <= retry_delay([1.0, 5.0], 2) <= 6.25
    assert retry_delay([1.0, 5.0], 3) is None


def test_retry_on_matches_the_rpc_type_or_a_class_of_the_exception():
    failure = Failure()
    failure.types = ["ConnectionRefusedError", "ConnectionError", "OSError", "Exception"]
    internal = {"code": -32603, "message": "Internal error", "data": {"type": "InternalError"}}
    assert retried(internal, failure, None)
    assert retried(internal, failure, frozenset({"ConnectionError"}))
    assert not retried(internal, failure, frozenset({"ValueError"}))
    assert retried({"data": {"type": "RequestTimeout"}}, Failure(), frozenset({"RequestTimeout"}))


async def test_a_failed_message_comes_back_after_each_delay_then_succeeds(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, retry_delays=[0.05, 0.05])
    flaky.failures["a"] = 2
    async with started(*services, app=App(name="test", env="test")):
        await producer.call("flaky.run", {"key": "a"})
        await until(lambda: listener.counters["processed"] == 1, what="the third delivery to succeed")
        assert flaky.runs == ["a", "a", "a"] and listener.counters["failed"] == 2
        assert await backend.dead_letters(listener.stream_key) == []
        await until(lambda: not listener.in_hand, what="the message to leave the listener's hand")


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_dead_letter_says_why_it_died(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, retry_delays=[0.02])
    flaky.failures["b"] = 99
    async with started(*services, app=App(name="test", env="test")) as app:
        headers = {"Correlation-Id": "corr-1", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        await producer.call("flaky.run", {"key": "b"}, headers=headers)
        await until(lambda: listener.counters["dead_lettered"] == 1, what="the dead letter")
        (dead,) = await app.services["streams"].dead("rpc")
    assert flaky.runs == ["b", "b"]  # one delivery, one retry: the list is spent
    assert dead["error_type"] == "RuntimeError" and dead["error_message"] == "poison b"
    assert dead["deliveries"] == 2 and dead["listener"] == listener.name
    assert (
        dead["correlation_id"] == "corr-1"
        and dead["trace_id"] == TRACE_ID
        and dead["error"]["data"]["type"] == "InternalError"
    )
    assert '"flaky.run"' in dead["body"] and dead["message_id"] and dead["time"]


async def test_only_the_errors_of_retry_on_are_retried(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, retry_delays=[0.02], retry_on=["ConnectionError"])
    flaky.failures.update(refused=1, broken=1)
    flaky.errors.update(refused=ConnectionRefusedError, broken=ValueError)
    async with started(*services, app=App(name="test", env="test")) as app:
        await producer.call("flaky.run", {"key": "refused"})
        await producer.call("flaky.run", {"key": "broken"})
        await until(lambda: listener.counters["processed"] + listener.counters["dead_lettered"] == 2, what="both")
        dead = await app.services["streams"].dead("rpc")
    assert sorted(flaky.runs) == ["broken", "refused", "refused"]  # the ValueError was not retried
    assert [d["error_type"] for d in dead] == ["ValueError"]


async def test_max_concurrency_bounds_the_messages_run_at_once(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, max_concurrency=1, batch_size=2)
    async with started(*services, app=App(name="test", env="test")):
        for _ in range(6):
            await producer.call("flaky.step")
        await until(lambda: len(flaky.runs) == 6, what="six steps")
    assert flaky.most == 1


async def test_a_replayed_dead_letter_runs_once_and_purge_drops_the_rest(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, retry_delays=[])
    flaky.failures.update(c=1, d=1)
    async with started(*services, app=App(name="test", env="test")) as app:
        streams = app.services["streams"]
        await producer.call("flaky.run", {"key": "c"})
        await producer.call("flaky.run", {"key": "d"})
        await until(lambda: listener.counters["dead_lettered"] == 2, what="two dead letters")
        first, second = await streams.dead("rpc")
        # two replays of one letter at once: it goes back once
        replays = await asyncio.gather(*(streams.replay("rpc", ids=[first["id"]]) for _ in range(2)))
        assert sorted(len(r["replayed"]) for r in replays) == [0, 1]
        await until(lambda: listener.counters["processed"] == 1, what="the replayed message to run")
        assert flaky.runs == ["c", "d", "c"]
        assert [d["id"] for d in await streams.dead("rpc")] == [second["id"]]
        assert await streams.purge("rpc", before="2000-01-01T00:00:00") == 0
        assert await streams.purge("rpc") == 1
        assert await streams.dead("rpc") == []
        with pytest.raises(rpc.InvalidParams):
            await streams.replay("rpc")
        with pytest.raises(rpc.InvalidParams):
            await streams.purge("rpc", before="yesterday")


async def test_a_stop_hands_back_what_the_listener_holds(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, stop_timeout=0.2, claim_idle_ms=60_000)
    rec = next(s for s in services if s.name == "rec")
    async with started(*services, app=App(name="test", env="test")):
        await producer.call("rec.slow", {"value": 1})
        await until(lambda: rec.started_runs == [1], what="the slow message to start")
        stream, group = listener.stream_key, listener.group_name
        await listener.stop()
        # another consumer's claim takes it at once, not after claim_idle_ms (a minute)
        _, claimed = await backend.claim_idle(stream, group, "c2", 60_000, 10)
        assert [m.deliveries for m in claimed] == [2]
        rec.release.set()


@pytest.mark.parametrize("backend_kind", ["memory"])
async def test_dead_letters_are_for_the_system_scope_only(make_stack):
    services, backend, listener, producer, flaky = stack(make_stack, retry_delays=[])
    rpc_server = next(s for s in services if isinstance(s, rpc.RPCServer))
    async with started(*services, app=App(name="test", env="test")):
        calls = {"streams.dead": {}, "streams.replay": {"all": True}, "streams.purge": {}}
        for method, params in calls.items():
            body = msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"topic": "rpc", **params}}
            )
            for scope in (Scope.GUEST, Scope.USER, Scope.SYSTEM):
                answer = msgspec.json.decode((await rpc_server.handle(body, scope=scope, transport="http")).body)
                assert ("error" in answer) == (scope != Scope.SYSTEM), (method, scope, answer)
