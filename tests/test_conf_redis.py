"""conf/redis.yml starts as shipped against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest

import kaiju
from kaiju.testing import TestApp, eventually, free_port

CONF = Path(__file__).parents[1] / "conf" / "redis.yml"


async def test_redis_example_config_runs(redis_url):
    async with TestApp(CONF, redis=redis_url) as app:
        cache, locks = app.service("cache"), app.service("locks")
        await cache.set("greeting", "hello")
        assert await cache.get("greeting") == "hello"
        async with locks.lock("job", ttl=1) as info:
            assert await locks.owner("job") == info.id
        redis = app.service("redis").client
        assert await redis.exists(cache.full_key("greeting")) == 1
        assert cache.full_key("greeting").endswith(".redis-example._cache.{greeting}")
        status = await app.call("listener.status")
        assert status["topic"] == "rpc" and status["processed"] == 0


async def test_redis_example_config_without_redis_fails_clearly():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(Exception) as err:
        async with kaiju.entrypoint(config=CONF, env={"REDIS_URL": url}, catch_signals=(), log_config=False):
            pass
    message = str(err.value)
    assert "does not answer" in message and ":***@127.0.0.1" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
async def test_the_sentinel_and_cluster_example_configs_run(mode, redis_settings):
    conf = CONF.with_name(f"redis-{mode}.yml")
    async with TestApp(conf, redis=redis_settings(mode)) as app:
        assert app.service("redis").mode == mode
        cache, producer = app.service("cache"), app.service("stream_producer")
        await cache.m_set({"a": 1, "b": 2, "c": 3})
        assert await cache.m_get(["a", "b", "c", "d"]) == {"a": 1, "b": 2, "c": 3}
        await producer.call("listener.status")  # written once a replica holds it (replicas: 1)
        await eventually(lambda: app.call("listener.status"), what="the listener's status")
        status = await app.call("listener.status")
        assert status["stream"] == "{dev.redis-example._stream.rpc}"
