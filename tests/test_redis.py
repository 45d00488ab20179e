"""RedisConnection against a real redis-server."""

from __future__ import annotations

import pytest

from kaiju.redis import RedisConnection, RedisUnavailable, mask_url
from kaiju.testing import free_port
from kaiju.testing.services import started


async def test_client_talks_to_redis(redis_url):
    conn = RedisConnection(url=redis_url)
    async with started(conn):
        await conn.client.set("k", b"v")
        assert await conn.client.get("k") == b"v"
    assert not hasattr(conn, "client")


async def test_start_fails_clearly_with_masked_password():
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    conn = RedisConnection(url=url, connect_timeout=1)
    with pytest.raises(RedisUnavailable) as err:
        async with started(conn):
            pass
    message = str(err.value)
    assert "does not answer" in message
    assert "user:***@127.0.0.1" in message
    assert "hunter2" not in message


async def test_bad_url_is_a_clear_error():
    with pytest.raises(ValueError, match="bad Redis URL"):
        async with started(RedisConnection(url="http://nowhere")):
            pass


def test_mask_url():
    assert mask_url("redis://:pw@h:6379/1") == "redis://:***@h:6379/1"
    assert mask_url("rediss://h:6380/0") == "rediss://h:6380/0"
