"""RPC requests through a topic, on both backends: delivery, batches, failures, dead letters, locks, stop."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from kaiju.runtime.service import App, Service
from kaiju.streams.base import StreamBackend, topic_key
from kaiju.testing.services import started
from tests.streams.helpers import until

APP = dict(name="test", env="test")


async def test_requests_reach_the_method_with_their_headers(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        await producer.call("rec.echo", {"value": 1}, headers={"Correlation-Id": "corr-1", "X-Trace": "t"})
        await producer.call("rec.echo", [2])
        await until(lambda: len(rec.calls) == 2, what="two calls")
        (_, v1, ctx1), (_, v2, ctx2) = rec.calls
        assert (v1, v2) == (1, 2)
        assert ctx1["correlation_id"] == "corr-1" and ctx1["headers"]["X-Trace"] == "t"
        assert ctx2["correlation_id"] and ctx2["correlation_id"] != "corr-1"
        await until(lambda: listener.counters["processed"] == 2, what="acks")
        status = await listener.status()
        assert status["stream"] == "{test.test._stream.rpc}" and status["group"] == "test"
        assert (status["processed"], status["failed"], status["dead_lettered"]) == (2, 0, 0)
        await until(lambda: not listener.in_hand, what="ack")
        status = await listener.streams.status()
        assert status[0]["pending"] == 0 and status[0]["lag"] == 0


async def test_a_batch_runs_every_request_in_one_message(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        batch = [("rec.echo", {"value": n}) for n in range(5)]
        await producer.call_multiple([*batch, {"method": "rec.echo", "params": [5]}])
        await until(lambda: len(rec.calls) == 6, what="six calls")
        assert sorted(rec.values()) == [0, 1, 2, 3, 4, 5]
        await until(lambda: listener.counters["processed"] == 1, what="one message acknowledged")


async def test_a_poison_message_is_dead_lettered_after_max_deliveries(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(max_deliveries=3, claim_idle_ms=100)
    async with started(*services, app=App(**APP)):
        await producer.call("rec.fail", {"value": "x"})
        await producer.call("rec.echo", {"value": "ok"})
        await until(lambda: listener.counters["dead_lettered"] == 1, what="dead letter")
        assert rec.values("fail") == ["x", "x", "x"]  # three deliveries, then given up
        assert rec.values("echo") == ["ok"]
        ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
        info = msgspec.json.decode(fields["x"])
        assert info["deliveries"] == 3 and info["error"]["data"]["type"] == "InternalError"
        assert msgspec.json.decode(fields["b"])["method"] == "rec.fail"
        await until(lambda: not listener.in_hand, what="ack")
        assert (await backend.group_info(listener.stream_key, "test")).pending == 0
        assert listener.counters["failed"] == 3


async def test_a_message_that_is_no_request_is_dead_lettered_at_once(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        await producer.write(b"not json at all")
        await producer.call("rec.echo", {"wrong": 1})  # invalid params: no redelivery can cure it
        await until(lambda: listener.counters["dead_lettered"] == 2, what="dead letters")
        dead = await backend.read_range(listener.stream_key + ".dead")
        codes = [msgspec.json.decode(f["x"])["error"]["code"] for _, f in dead]
        assert codes == [-32700, -32602]
        assert rec.calls == []


async def test_an_expired_message_is_dead_lettered_not_run(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        await producer.call("rec.echo", {"value": "late"}, headers={"Deadline": str(time.time() - 1)})
        await producer.call("rec.echo", {"value": "fine"}, timeout=60)
        await until(lambda: rec.values() == ["fine"] and listener.counters["dead_lettered"] == 1, what="run + dead")
        ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
        assert msgspec.json.decode(fields["x"])["error"]["data"]["type"] == "RequestTimeout"
        assert "late" not in rec.values()


async def test_topic_lock_pauses_and_resumes_two_listeners(make_stack) -> None:
    services, backend, listeners, producer, rec = make_stack(listeners=[{"consumer": "c1"}, {"consumer": "c2"}])
    async with started(*services, app=App(**APP)):
        streams = listeners[0].streams
        assert streams is listeners[1].streams and streams.backend is backend
        assert await streams.lock_topic("rpc") is True
        assert await streams.lock_topic("rpc") is False
        await until(lambda: all(x.state == "paused" for x in listeners), what="both paused")
        for n in range(10):
            await producer.call("rec.echo", {"value": n})
        await asyncio.sleep(0.3)
        assert rec.calls == [], "a paused listener took a message"
        assert await streams.unlock_topic("rpc") is True
        await until(lambda: len(rec.calls) == 10, what="all ten after unlock")
        assert all(x.state == "running" for x in listeners)


async def test_graceful_stop_acknowledges_only_processed_messages(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(batch_size=4, max_parallel_batches=1, stop_timeout=0.2)
    app = App(**APP)
    async with started(*services, app=app):
        for n in range(12):
            await producer.call("rec.slow" if n == 2 else "rec.echo", {"value": n})
        await until(lambda: rec.started_runs == [2], what="the slow one in hand")
    # stopped: the slow message was cancelled unfinished; 3 of its batch could not run after it
    done = set(rec.values())
    assert done == {0, 1}
    # the survivors: nothing acknowledged that was not processed
    services2, backend2, (listener2,), _, rec2 = make_stack(consumer="c2")
    if backend2.__class__ is backend.__class__ and backend.__class__.__name__ == "MemoryStream":
        services2[0] = backend  # one process: the same memory streams
        backend2 = backend
    rec2.release.set()
    async with started(*services2, app=App(**APP)):
        await until(lambda: set(rec2.values()) | set(rec2.values("slow")) | done == set(range(12)), what="the rest")
        assert not (set(rec2.values()) & done), "a processed message was redelivered: not acknowledged?"
        # at least the slow one, left pending by c1 (with whatever else its batch held: how the
        # first reads split the twelve into batches depends on timing)
        assert listener2.counters["claimed"] >= 1


async def test_status_and_topic_lock_over_rpc(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        server = next(s for s in services if s.name == "rpc")
        await producer.call("rec.echo", {"value": 1})
        await until(lambda: listener.counters["processed"] == 1 and not listener.in_hand, what="one processed")
        (status,) = await server.call("streams.status")
        assert (status["topic"], status["processed"], status["pending"], status["lag"]) == ("rpc", 1, 0, 0)
        assert (await server.call("listener0.status"))["consumer"] == "c1"
        assert await server.call("streams.lock_topic", {"topic": "rpc"}) is True
        await until(lambda: listener.state == "paused", what="paused over RPC")
        await producer.call("rec.echo", {"value": 2})
        await asyncio.sleep(0.2)
        (status,) = await server.call("streams.status")
        assert status["state"] == "paused" and status["lag"] == 1 and len(rec.calls) == 1
        assert await server.call("streams.unlock_topic", {"topic": "rpc"}) is True
        await until(lambda: len(rec.calls) == 2, what="resumed over RPC")


async def test_a_restarted_consumer_rereads_its_own_pending_first(make_stack) -> None:
    # claim_idle_ms is long: only the re-read of its own pending list can bring them back
    services, backend, (listener,), producer, rec = make_stack(claim_idle_ms=600_000, stop_timeout=0.05, batch_size=3)
    async with started(*services, app=App(**APP)):
        for n in range(3):
            await producer.call("rec.slow", {"value": n})
        await until(lambda: rec.started_runs == [0], what="first in hand")
    assert rec.values("slow") == []
    services2, backend2, (listener2,), _, rec2 = make_stack(claim_idle_ms=600_000)  # same consumer name, c1
    if backend.__class__.__name__ == "MemoryStream":
        services2[0] = backend  # one process: the same memory streams
    rec2.release.set()
    async with started(*services2, app=App(**APP)):
        await until(lambda: sorted(rec2.values("slow")) == [0, 1, 2], what="own pending re-read")
        assert listener2.counters["claimed"] == 0


async def test_maxlen_trims_only_what_every_group_is_done_with(make_stack) -> None:
    services, backend, listeners, producer, rec = make_stack(
        listeners=[{"maxlen": 10, "consumer": "a"}, {"group": "other", "consumer": "b"}]
    )
    async with started(*services, app=App(**APP)):
        main, other = listeners
        await main.streams.lock_stream(main.stream_key)  # hold both back while writing
        await until(lambda: main.state == other.state == "paused", what="paused")
        for n in range(300):
            await producer.call("rec.echo", {"value": n})
        await main.streams.unlock_stream(main.stream_key)
        await until(lambda: main.counters["processed"] == other.counters["processed"] == 300, what="both groups done")
        for _ in range(100):  # the trim pass runs at most once a second
            if await backend.length(main.stream_key) < 300:
                break
            await asyncio.sleep(0.05)
        assert await backend.length(main.stream_key) < 300


async def test_bad_settings_fail_start_with_a_clear_error(make_stack) -> None:
    import pytest

    from kaiju.config import ConfigError
    from kaiju.runtime.plan import build_plan

    services, *_ = make_stack(batch_size=0)  # a bad value is the plan's to find, before anything starts
    with pytest.raises(ConfigError, match=r"\.settings\.batch_size: expected int >= 1, got 0"):
        build_plan(None, services)
    services, *_ = make_stack(scope="nobody")
    with pytest.raises(ValueError, match="unknown scope"):
        async with started(*services, app=App(**APP)):
            pass
    services, *_ = make_stack(use_sessions=True)  # and no sessions or auth service: the check says so
    with pytest.raises(ConfigError, match=r"\.settings\.use_sessions: expected a sessions or auth service"):
        build_plan(None, services)
    services, *_ = make_stack(use_sessions=True)
    with pytest.raises(ValueError, match="use_sessions: expected a sessions or auth service"):
        async with started(*services, app=App(**APP)):
            pass


async def test_producer_addresses_other_apps_and_the_shared_namespace(make_stack) -> None:
    services, backend, _, producer, _ = make_stack()
    async with started(*services, app=App(**APP)):
        assert producer.stream_key() == "{test.test._stream.rpc}"
        assert producer.stream_key("jobs", app="billing") == "{test.billing._stream.jobs}"
        assert producer.stream_key(shared=True) == "{test._shared._stream.rpc}"
        await producer.call("x.y", {"a": 1}, app="billing", timeout=5, key="k")
        ((_, fields),) = await backend.read_range("{test.billing._stream.rpc}")
        assert msgspec.json.decode(fields["b"]) == {"jsonrpc": "2.0", "method": "x.y", "params": {"a": 1}}
        headers = msgspec.json.decode(fields["h"])
        assert float(headers["Deadline"]) > time.time() and headers["Correlation-Id"]
        assert fields["k"] == b"k"
        import pytest

        with pytest.raises(TypeError):
            await producer.call("x.y", "not params")
        with pytest.raises(ValueError):
            await producer.call_multiple([])
        with pytest.raises(TypeError):
            await producer.write("not bytes")


async def test_entries_written_by_others_in_a_bad_shape_are_dead_lettered(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        await producer.write(b'{"jsonrpc":"2.0","method":"rec.echo","params":[1]}', {"n": 1})  # type: ignore[dict-item]
        await producer.call("rec.echo", {"value": 2})
        await until(lambda: listener.counters["dead_lettered"] == 1 and rec.values() == [2], what="bad one out")
        ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
        assert "unreadable headers" in msgspec.json.decode(fields["x"])["error"]["message"]
        assert listener.state == "running"


async def _leave_with_a_dead_consumer(backend, listener, producer, values: list) -> list[str]:
    """With the topic locked (the listener parked), write `values` and have a consumer that then
    dies take them: they stay pending under its name until someone claims them."""
    await listener.streams.lock_stream(listener.stream_key)
    await until(lambda: listener.state == "paused", what="paused")
    for value in values:
        await producer.call("rec.echo", {"value": value})
    taken = await backend.read_new(listener.stream_key, listener.group_name, "dead", len(values), 0)
    assert len(taken) == len(values)
    return [m.id for m in taken]


async def test_one_slot_still_claims_a_dead_consumers_messages(make_stack) -> None:
    # the only slot is held by the blocking read most of the time: claims must get their turn anyway
    services, backend, (listener,), producer, rec = make_stack(max_parallel_batches=1, block_ms=500, claim_idle_ms=200)
    async with started(*services, app=App(**APP)):
        await _leave_with_a_dead_consumer(backend, listener, producer, ["d0", "d1", "d2"])
        await listener.streams.unlock_stream(listener.stream_key)
        await until(lambda: sorted(rec.values()) == ["d0", "d1", "d2"], what="the dead consumer's messages run")
        assert listener.counters["claimed"] == 3
        await until(lambda: not listener.in_hand, what="acks")
        assert (await backend.group_info(listener.stream_key, "test")).pending == 0


async def test_one_slot_still_retries_and_dead_letters_a_failing_message(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(
        max_parallel_batches=1, block_ms=200, claim_idle_ms=100, max_deliveries=3
    )
    async with started(*services, app=App(**APP)):
        await producer.call("rec.fail", {"value": "x"})
        await until(lambda: listener.counters["dead_lettered"] == 1, what="dead letter after retries")
        assert rec.values("fail") == ["x", "x", "x"]
        await until(lambda: not listener.in_hand, what="ack")
        assert (await backend.group_info(listener.stream_key, "test")).pending == 0


async def test_claims_do_not_wait_for_a_backlog_to_drain(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(
        recorder={"delay": 0.002}, block_ms=500, claim_idle_ms=200, batch_size=16
    )
    async with started(*services, app=App(**APP)):
        await _leave_with_a_dead_consumer(backend, listener, producer, ["d0", "d1", "d2"])
        for n in range(300):
            await producer.call("rec.echo", {"value": n})
        await asyncio.sleep(0.25)  # the dead consumer's messages are idle past claim_idle_ms before the listener resumes
        await listener.streams.unlock_stream(listener.stream_key)
        await until(lambda: len(rec.calls) == 303, timeout=30, what="backlog and claimed messages")
        values = rec.values()
        positions = [values.index(v) for v in ("d0", "d1", "d2")]
        # claimed at the first turn after resuming, not after the 300 others
        assert max(positions) < 100, positions


async def test_a_slow_message_does_not_hold_up_the_others(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(max_parallel_batches=2)
    async with started(*services, app=App(**APP)):
        await producer.call("rec.slow", {"value": "slow"})
        await until(lambda: rec.started_runs == ["slow"], what="the slow one in hand")
        for n in range(3):
            await producer.call("rec.echo", {"value": n}, timeout=60)
        # the second slot is free: the others run while the slow one is still in hand
        await until(lambda: sorted(rec.values()) == [0, 1, 2], what="the others run beside the slow one")
        assert rec.values("slow") == [] and listener.counters["dead_lettered"] == 0
        rec.release.set()
        await until(lambda: rec.values("slow") == ["slow"], what="the slow one")


async def test_a_method_sees_the_stream_message_id_as_its_idempotency_key(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack()
    async with started(*services, app=App(**APP)):
        # one correlation id on two messages (as a producer inside one request writes them)
        first = await producer.call("rec.echo", {"value": 1}, headers={"Correlation-Id": "same"})
        second = await producer.call("rec.echo", {"value": 2}, headers={"Correlation-Id": "same", "message-id": "forged"})
        await until(lambda: len(rec.calls) == 2, what="two calls")
        ids = {value: ctx["headers"]["Message-Id"] for _, value, ctx in rec.calls}
        assert ids == {1: f"{listener.stream_key}/{first}", 2: f"{listener.stream_key}/{second}"}
        assert all("message-id" not in ctx["headers"] for _, _, ctx in rec.calls)


async def test_nothing_is_read_after_stop_is_called(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(batch_size=1, max_parallel_batches=1, block_ms=1000)
    async with started(*services, app=App(**APP)):
        await producer.call("rec.slow", {"value": 0})
        for n in range(1, 4):
            await producer.call("rec.echo", {"value": n})
        await until(lambda: rec.started_runs == [0], what="the slow one in hand")
        stopping = asyncio.ensure_future(listener.stop())
        await asyncio.sleep(0)  # stop() has begun; the reader waits for the only slot
        rec.release.set()
        await asyncio.wait_for(stopping, 15)
        assert rec.values("slow") == [0]
        assert rec.values() == [], "messages were taken after stop()"
        assert (await backend.group_info(listener.stream_key, "test")).lag == 3


async def test_stop_during_an_idle_read_takes_nothing(make_stack, backend_kind) -> None:
    # MemoryStream's reads are cancel-safe, so stop() cancels the waiting read; a Redis read
    # is waited for (up to block_ms), as what it took must be run or left for a claim
    services, backend, (listener,), producer, rec = make_stack(block_ms=300, claim_idle_ms=3_600_000)
    async with started(*services, app=App(**APP)):
        await until(lambda: listener.active.reading, what="the reader waiting in a read")
        await asyncio.sleep(0.05)
        (reader,) = [t for t in asyncio.all_tasks() if t.get_name() == f"{listener.name}.read"]
        await asyncio.wait_for(listener.stop(), 10)
        assert reader.cancelled() == (backend_kind == "memory")
        await producer.call("rec.echo", {"value": 1})
        info = await backend.group_info(listener.stream_key, "test")
        assert (info.lag, info.pending) == (1, 0), "a message was taken after stop()"
        assert rec.values() == []


async def test_sessions_in_messages_are_used_only_when_enabled(make_stack) -> None:
    from kaiju.cache.memory import MemoryCache
    from kaiju.rpc import Scope
    from kaiju.auth.sessions import CacheSessions

    sessions = CacheSessions()
    services, _, (off, on), producer, rec = make_stack(listeners=[{"topic": "plain"}, {"topic": "trusting", "use_sessions": True}])
    services[:0] = [MemoryCache(), sessions]
    async with started(*services, app=App(**APP)):
        s = await sessions.new_session(user_id="ann", scope=Scope.USER, permissions=["rec.echo"])
        await producer.call("rec.echo", {"value": "plain"}, headers={"Session-Id": s.id}, topic="plain")
        await producer.call("rec.echo", {"value": "trusting"}, headers={"Session-Id": s.id}, topic="trusting")
        await until(lambda: len(rec.calls) == 2, what="two calls")
        facts = {value: ctx for _, value, ctx in rec.calls}
        assert facts["plain"]["scope"] is Scope.SYSTEM and facts["plain"]["user"] is None
        assert "Session-Id" not in facts["plain"]["headers"]
        assert facts["trusting"]["scope"] is Scope.USER and facts["trusting"]["user"] == "ann"


class CrashedConsumer(Service):
    """Started just before the listener: leaves one request pending on the topic's group,
    delivered three times already, as consumers that died while running it would."""

    service_name = "crashed"
    backend: StreamBackend

    async def start(self) -> None:
        key, group = topic_key(self.app.namespace, "rpc"), self.app.name
        await self.backend.create_group(key, group)
        body = msgspec.json.encode({"jsonrpc": "2.0", "method": "rec.echo", "params": {"value": "crash"}})
        await self.backend.add(key, body)
        assert [m.deliveries for m in await self.backend.read_new(key, group, "crashed", 10, 100)] == [1]
        for deliveries in (2, 3):
            _, claimed = await self.backend.claim_idle(key, group, "crashed", 0, 10)
            assert [m.deliveries for m in claimed] == [deliveries]


async def test_a_message_past_max_deliveries_is_dead_lettered_without_running(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(max_deliveries=2, claim_idle_ms=100)
    services.insert(services.index(listener), CrashedConsumer())
    async with started(*services, app=App(**APP)):
        await until(lambda: listener.counters["dead_lettered"] == 1, what="the message to be dead-lettered")
        ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
        error = msgspec.json.decode(fields["x"])["error"]
        assert error["data"]["type"] == "MaxDeliveries" and msgspec.json.decode(fields["b"])["params"] == {"value": "crash"}
        await producer.call("rec.echo", {"value": "after"})  # the listener goes on with the next one
        await until(lambda: rec.values() == ["after"], what="the next message to run")
    assert "crash" not in rec.values(), "a message past max_deliveries was run"
    assert listener.counters["failed"] == 0


async def test_a_group_lost_in_a_redis_restart_without_persistence_is_created_again(backend_kind, caplog) -> None:
    if backend_kind == "memory":
        pytest.skip("a memory stream is not restarted apart from its process")
    from kaiju.locks.redis import RedisLocks
    from kaiju.redis import RedisConnection
    from kaiju.rpc.server import RPCServer
    from kaiju.streams.listener import StreamListener
    from kaiju.streams.producer import StreamProducer
    from kaiju.streams.redis import RedisStream
    from kaiju.streams.service import Streams
    from kaiju.testing import RedisServer
    from tests.streams.helpers import Recorder

    server = RedisServer(persistent=False)  # its own: a restart forgets every key, groups included
    server.start()
    try:
        rec = Recorder()
        listener = StreamListener(block_ms=100, claim_idle_ms=300, lock_check_ms=50, consumer="c1")
        services = [RedisConnection(url=server.url, socket_timeout=3.0), RedisStream(), RedisLocks(), Streams(), rec,
                    RPCServer(), listener, StreamProducer()]
        async with started(*services, app=App(**APP)) as app:
            producer = app.services[services[-1].name]
            await producer.call("rec.echo", {"value": "before"})
            await until(lambda: rec.values() == ["before"], what="the first message")
            await asyncio.to_thread(server.restart)
            assert not await services[1].length(listener.stream_key)  # the stream and its group are gone

            async def delivered() -> bool:  # the producer may find Redis still reconnecting: write again then
                if "after" not in rec.values():
                    try:
                        await producer.call("rec.echo", {"value": "after"})
                    except Exception:
                        return False
                return "after" in rec.values()

            await until(delivered, timeout=30, what="a message written after the restart to run")
            assert (await services[1].group_info(listener.stream_key, "test")).length >= 1  # the group exists again
    finally:
        server.cleanup()
    assert any(r.getMessage() == "group missing, creating it again" for r in caplog.records)


async def test_a_finished_batch_is_acknowledged_by_the_next_read(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(batch_size=2, max_parallel_batches=1, block_ms=200)
    carried: list[str] = []
    real = backend.ack_and_read_new

    async def ack_and_read_new(stream, group, consumer, ack_ids, count, block_ms):
        carried.extend(ack_ids)
        return await real(stream, group, consumer, ack_ids, count, block_ms)

    backend.ack_and_read_new = ack_and_read_new  # the real backend, watched
    async with started(*services, app=App(**APP)):
        ids = [await producer.call("rec.slow", {"value": "slow"})]
        await until(lambda: rec.started_runs == ["slow"], what="the slow one in hand")
        ids += [await producer.call("rec.echo", {"value": n}) for n in range(8)]
        rec.release.set()  # the rest now come in full batches: the reader waits for the slot
        await until(lambda: sorted(rec.values()) == list(range(8)), what="all eight")

        async def nothing_pending() -> bool:
            return (await backend.group_info(listener.stream_key, listener.group_name)).pending == 0

        await until(nothing_pending, what="every message acknowledged")
        assert carried and set(carried) <= set(ids)  # acknowledged on the way to a read, only what ran
        assert sorted(rec.values()) == list(range(8)) and rec.values("slow") == ["slow"]  # each ran once


async def test_the_listeners_lines_about_a_message_carry_its_correlation_id(make_stack, caplog) -> None:
    import logging

    services, _, (listener,), producer, rec = make_stack(max_deliveries=1)
    with caplog.at_level(logging.INFO):
        async with started(*services, app=App(**APP)):
            await producer.call("rec.fail", {"value": "x"}, headers={"Correlation-Id": "order-7"})
            await until(lambda: listener.counters["dead_lettered"] == 1, what="dead letter")
    lines = [r for r in caplog.records if r.getMessage() == "message dead-lettered"]
    assert len(lines) == 1 and lines[0].correlation_id == "order-7", caplog.text


async def test_a_call_to_a_method_this_app_does_not_serve_on_its_own_topic_is_warned_once(make_stack, caplog) -> None:
    import logging

    services, _, (listener,), producer, rec = make_stack(max_deliveries=1)
    with caplog.at_level(logging.WARNING):
        async with started(*services, app=App(**APP)):
            for _ in range(3):
                await producer.call("rec.nope")
            await producer.call("rec.echo", {"value": "served"})
            await until(lambda: listener.counters["dead_lettered"] == 3 and rec.values("echo") == ["served"], what="runs")
    warned = [r for r in caplog.records if "no service of the app serves the method" in r.getMessage()]
    assert len(warned) == 1 and warned[0].method == "rec.nope", caplog.text


async def test_header_names_seen_before_skip_no_check_of_a_later_message(make_stack) -> None:
    # the listener learns which header names it passes on as they are; a later message with a
    # known name beside a Deadline, a dropped name or a forged Message-Id is still read in full
    services, backend, (listener,), producer, rec = make_stack(batch_size=1)
    async with started(*services, app=App(**APP)):
        await producer.call("rec.echo", {"value": "first"}, headers={"Correlation-Id": "c1", "X-Tag": "a"})
        await until(lambda: rec.values() == ["first"], what="the first message")
        await producer.call("rec.echo", {"value": "late"}, headers={"X-Tag": "b", "Deadline": str(time.time() - 1)})
        await producer.call("rec.echo", {"value": "caller"}, headers={"X-Tag": "c", "Session-Id": "s1"})
        forged = await producer.call("rec.echo", {"value": "forged"}, headers={"X-Tag": "d", "Message-Id": "x"})
        await producer.call("rec.echo", {"value": "again"}, headers={"Correlation-Id": "c2", "X-Tag": "e"})
        await until(lambda: len(rec.calls) == 4 and listener.counters["dead_lettered"] == 1, what="runs + dead")
        facts = {value: ctx["headers"] for _, value, ctx in rec.calls}
        assert sorted(facts) == ["again", "caller", "first", "forged"]
        assert "Session-Id" not in facts["caller"] and facts["caller"]["X-Tag"] == "c"
        assert facts["forged"]["Message-Id"] == f"{listener.stream_key}/{forged}"
        assert facts["again"]["X-Tag"] == "e" and facts["again"]["Correlation-Id"] == "c2"
        ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
        assert msgspec.json.decode(fields["x"])["error"]["data"]["type"] == "RequestTimeout"
