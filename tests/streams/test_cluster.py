"""Two independent app instances on one Redis (as two processes would be): the topic lock
taken through one pauses the listener of the other, through the shared lock alone."""

from __future__ import annotations

import asyncio

import pytest

from kaiju.locks.redis import RedisLocks
from kaiju.redis import RedisConnection
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import App
from kaiju.streams.listener import StreamListener
from kaiju.streams.producer import StreamProducer
from kaiju.streams.redis import RedisStream
from kaiju.streams.service import Streams
from kaiju.testing.services import started
from tests.streams.helpers import Recorder, until

pytestmark = pytest.mark.redis


def instance(url: str, consumer: str) -> list:
    return [RedisConnection(url=url), RedisStream(), RedisLocks(), Streams(), Recorder(), RPCServer(),
            StreamListener(consumer=consumer, block_ms=100, lock_check_ms=50), StreamProducer()]


async def test_topic_lock_reaches_a_listener_of_another_instance(redis_url: str) -> None:
    one, two = instance(redis_url, "one"), instance(redis_url, "two")
    async with started(*one, app=App(name="test", env="test")), started(*two, app=App(name="test", env="test")):
        streams_one, streams_two, listener_one, listener_two, producer = one[3], two[3], one[6], two[6], one[7]
        rec_one, rec_two = one[4], two[4]
        assert await streams_one.lock_topic("rpc") is True
        await until(lambda: listener_one.state == listener_two.state == "paused", what="both instances paused")
        for n in range(20):
            await producer.call("rec.echo", {"value": n})
        await asyncio.sleep(0.3)
        assert rec_one.calls == [] and rec_two.calls == []
        assert await streams_two.unlock_topic("rpc") is True  # unlocked from the other instance
        await until(lambda: len(rec_one.calls) + len(rec_two.calls) == 20, what="all twenty after unlock")
        values = rec_one.values() + rec_two.values()
        assert sorted(values) == list(range(20))


async def test_a_shared_topic_lock_reaches_the_listener_of_another_app(redis_url: str) -> None:
    def app_services(consumer: str) -> list:
        return [RedisConnection(url=redis_url), RedisStream(), RedisLocks(), Streams(), Recorder(), RPCServer(),
                StreamListener(shared=True, consumer=consumer, block_ms=100, lock_check_ms=50)]

    a, b = app_services("x"), app_services("x")
    async with started(*a, app=App(name="a", env="test")), started(*b, app=App(name="b", env="test")):
        listener_a, listener_b = a[6], b[6]
        assert listener_a.stream_key == listener_b.stream_key == "{test._shared._stream.rpc}"
        assert await a[3].lock_topic("rpc", shared=True) is True
        await until(lambda: listener_a.state == listener_b.state == "paused", what="both apps paused")
        assert await b[3].lock_topic("rpc", shared=True) is False  # b sees a's lock
        assert await b[3].unlock_topic("rpc", shared=True) is True
        await until(lambda: listener_a.state == listener_b.state == "running", what="both apps resumed")
