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
from kaiju.testing.services import started
from tests.streams.helpers import Recorder, until

pytestmark = pytest.mark.redis


def instance(url: str, consumer: str) -> list:
    return [RedisConnection(url=url), RedisStream(), RedisLocks(), Recorder(), RPCServer(),
            StreamListener(consumer=consumer, block_ms=100, lock_check_ms=50), StreamProducer()]


async def test_topic_lock_reaches_a_listener_of_another_instance(redis_url: str) -> None:
    one, two = instance(redis_url, "one"), instance(redis_url, "two")
    async with started(*one, app=App(name="test", env="test")), started(*two, app=App(name="test", env="test")):
        backend_one, listener_one, listener_two, producer = one[1], one[5], two[5], one[6]
        assert await backend_one.lock_topic("rpc") is True
        await until(lambda: listener_one.state == listener_two.state == "paused", what="both instances paused")
        for n in range(20):
            await producer.call("rec.echo", {"value": n})
        await asyncio.sleep(0.3)
        assert one[3].calls == [] and two[3].calls == []
        assert await two[1].unlock_topic("rpc") is True  # unlocked from the other instance
        await until(lambda: len(one[3].calls) + len(two[3].calls) == 20, what="all twenty after unlock")
        values = one[3].values() + two[3].values()
        assert sorted(values) == list(range(20))
