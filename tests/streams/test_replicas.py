"""RedisStream `replicas`: an XADD is confirmed only once that many replicas hold it."""

from __future__ import annotations

import pytest

from kaiju.redis import RedisConnection
from kaiju.runtime.service import App
from kaiju.streams.base import StreamUnavailable
from kaiju.streams.redis import RedisStream
from kaiju.testing.services import started

S = "{test.test._stream.r}"


@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
async def test_an_add_returns_once_a_replica_holds_it(mode, redis_settings):
    services = [RedisConnection(**redis_settings(mode)), RedisStream(replicas=1)]
    async with started(*services, app=App(name="test", env="test")):
        ids = [await services[1].add(S, b"x") for _ in range(3)]
        assert [entry_id for entry_id, _ in await services[1].read_range(S)] == ids


async def test_an_add_without_enough_replicas_is_refused_not_confirmed(redis_url):
    services = [RedisConnection(url=redis_url), RedisStream(replicas=1, replicas_timeout=0.1)]
    async with started(*services, app=App(name="test", env="test")):
        with pytest.raises(StreamUnavailable, match="reached 0 of 1 replicas"):
            await services[1].add(S, b"x")
