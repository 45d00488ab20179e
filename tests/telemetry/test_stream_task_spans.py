"""Spans of stream messages (producer and listener) and of task runs, recorded in memory."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from kaiju import rpc
from kaiju.locks.memory import MemoryLocks
from kaiju.rpc import RPCServer
from kaiju.runtime.service import Service
from kaiju.streams.listener import StreamListener
from kaiju.streams.memory import MemoryStream
from kaiju.streams.producer import StreamProducer
from kaiju.streams.service import Streams
from kaiju.tasks import CronTask, PeriodicTask
from kaiju.telemetry import Telemetry
from kaiju.testing import eventually
from kaiju.testing.services import started


class Shop(Service):
    service_name = "shop"

    producer: StreamProducer | None = None
    rpc: RPCServer

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stored: list[int] = []

    @rpc.method
    async def order(self, n: int) -> str:
        assert self.producer is not None
        return await self.producer.call("shop.ship", {"n": n})

    @rpc.method
    async def ship(self, n: int) -> None:
        if n < 0:
            raise ValueError("nothing to ship")
        await self.rpc.call("shop.store", {"n": n})

    @rpc.method
    async def store(self, n: int) -> None:
        self.stored.append(n)


def stack() -> tuple[Telemetry, Shop, StreamListener, list]:
    tel, shop = Telemetry(exporter="memory", global_provider=False), Shop()
    listener = StreamListener(block_ms=50, max_deliveries=1, consumer="c1")
    return (
        tel,
        shop,
        listener,
        [tel, MemoryStream(), MemoryLocks(), Streams(), RPCServer(), listener, StreamProducer(), shop],
    )


async def test_a_message_is_processed_in_a_child_of_the_span_that_sent_it() -> None:
    tel, shop, listener, services = stack()
    async with started(*services) as app:
        message_id = await app.services["rpc"].call("shop.order", {"n": 3})
        await eventually(lambda: shop.stored == [3] and len(tel.spans("shop.store")) == 1, what="the message processed")
        recorder = tel.recorder
        order, send, process = recorder.one("shop.order"), recorder.one("send rpc"), recorder.one("process rpc")
        ship, store = recorder.one("shop.ship"), recorder.one("shop.store")
    assert recorder.parent_of(send) is order and recorder.parent_of(process) is send
    assert recorder.parent_of(ship) is process and recorder.parent_of(store) is ship
    assert len({s.context.trace_id for s in (order, send, process, ship, store)}) == 1
    assert (send.kind, process.kind, ship.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.SERVER)
    stream = listener.stream_key
    assert dict(send.attributes) == {
        "messaging.system": "memory",
        "messaging.destination.name": stream,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": message_id,
    }
    assert dict(process.attributes) == {
        "messaging.system": "memory",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": "test",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": message_id,
        "kaiju.stream.deliveries": 1,
        "kaiju.stream.outcome": "acked",
    }


async def test_a_dead_lettered_message_is_an_error_of_its_process_span() -> None:
    tel, shop, listener, services = stack()
    async with started(*services) as app:
        await app.services["rpc"].call("shop.order", {"n": -1})
        await eventually(lambda: listener.counters["dead_lettered"] == 1, what="the message dead-lettered")
        process = tel.recorder.one("process rpc")
    assert process.attributes["kaiju.stream.outcome"] == "dead_lettered"
    assert process.status.status_code is StatusCode.ERROR and process.attributes["error.type"] == "InternalError"


async def test_each_task_run_is_the_root_of_a_trace_with_its_schedule_and_outcome() -> None:
    tel, shop = Telemetry(exporter="memory", global_provider=False), Shop()
    every = PeriodicTask(name="restock", interval=3600, method="shop.store", params={"n": 1}, singleton=True)
    nightly = CronTask(name="audit", cron="0 3 * * *", method="shop.ship", params={"n": -1})
    async with started(tel, MemoryLocks(), RPCServer(), shop, every, nightly):
        await every.fire_now()
        await nightly.fire_now()
        recorder = tel.recorder
        restock, claim, store = recorder.one("restock"), recorder.one("claim singleton"), recorder.one("shop.store")
        audit, ship = recorder.one("audit"), recorder.one("shop.ship")
    assert restock.parent is None and audit.parent is None and restock.context.trace_id != audit.context.trace_id
    assert recorder.parent_of(claim) is restock and recorder.parent_of(store) is restock
    assert claim.attributes["kaiju.task.claimed"] is True
    assert restock.attributes["kaiju.task.schedule"] == "every 3600 s"
    assert restock.attributes["kaiju.task.type"] == "periodic"
    assert restock.attributes["kaiju.task.outcome"] == "ok" and restock.attributes["kaiju.task.singleton"] is True
    assert store.attributes["kaiju.transport"] == "task"
    assert audit.attributes["kaiju.task.schedule"] == "0 3 * * *" and audit.attributes["kaiju.task.outcome"] == "failed"
    assert audit.status.status_code is StatusCode.ERROR and audit.attributes["error.type"] == "ValueError"
    assert recorder.parent_of(ship) is audit
