"""Fixtures: a started stream backend of each kind (memory, and Redis on the test server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kaiju.runtime.service import App
from kaiju.streams.base import StreamBackend
from kaiju.streams.memory import MemoryStream
from kaiju.testing.services import started


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def backend_services(backend_kind: str, request: pytest.FixtureRequest) -> list:
    """Unstarted backend services: `[MemoryStream]` or `[RedisConnection, RedisStream]`."""
    if backend_kind == "memory":
        return [MemoryStream()]
    from kaiju.redis import RedisConnection
    from kaiju.streams.redis import RedisStream

    url = request.getfixturevalue("redis_url")
    return [RedisConnection(url=url, socket_timeout=3.0), RedisStream()]


@pytest.fixture
async def backend(backend_services: list) -> AsyncIterator[StreamBackend]:
    async with started(*backend_services, app=App(name="test", env="test")):
        yield backend_services[-1]
