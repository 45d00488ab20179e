from __future__ import annotations

import pytest

from kaiju.cache.memory import MemoryCache
from kaiju.runtime.service import App
from kaiju.testing.services import started


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_cache(backend, request):
    """Services giving a Cache of the current backend (the cache is the last one)."""

    def make(**settings):
        if backend == "memory":
            return [MemoryCache(**settings)]
        from kaiju.cache.redis import RedisCache
        from kaiju.redis import RedisConnection

        redis = request.getfixturevalue("redis_settings")(backend)
        return [RedisConnection(**redis), RedisCache(**settings)]

    return make


@pytest.fixture
async def cache(make_cache):
    services = make_cache()
    async with started(*services, app=App(name="shop", env="test")):
        yield services[-1]
