from __future__ import annotations

import pytest

from kaiju.locks.memory import MemoryLocks
from kaiju.testing.services import started


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_locks(backend, request):
    """Build a started-able list of services giving a Locks of the current backend."""

    def make(**settings):
        if backend == "memory":
            return [MemoryLocks(**settings)]
        from kaiju.locks.redis import RedisLocks
        from kaiju.redis import RedisConnection

        redis = request.getfixturevalue("redis_settings")(backend)
        return [RedisConnection(**redis), RedisLocks(**settings)]

    return make


@pytest.fixture
async def locks(make_locks):
    services = make_locks()
    async with started(*services):
        yield services[-1]
