"""Fixtures: a started stream backend of each kind (memory, and Redis on the test server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kaiju.runtime.service import App
from kaiju.streams.base import StreamBackend
from kaiju.streams.memory import MemoryStream
from kaiju.testing.services import started


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def backend_services(backend_kind: str, request: pytest.FixtureRequest) -> list:
    """Unstarted backend services: `[MemoryStream]` or `[RedisConnection, RedisStream]`."""
    if backend_kind == "memory":
        return [MemoryStream()]
    from kaiju.redis import RedisConnection
    from kaiju.streams.redis import RedisStream

    redis = request.getfixturevalue("redis_settings")(backend_kind)
    return [RedisConnection(**redis, socket_timeout=3.0), RedisStream()]


@pytest.fixture
async def backend(backend_services: list) -> AsyncIterator[StreamBackend]:
    async with started(*backend_services, app=App(name="test", env="test")):
        yield backend_services[-1]


@pytest.fixture
def make_stack(backend_kind: str, request: pytest.FixtureRequest):
    """`make_stack(**listener_settings)` -> (services, backend, listener, producer, recorder):
    unstarted services for one app of the chosen backend, with locks, the `Streams` service,
    the RPC server and a `Recorder`; pass `listeners=[{...}, {...}]` for several listeners.
    The `Streams` service is `listener.streams` (or `streams_of(services)`)."""
    from kaiju.rpc.server import RPCServer
    from kaiju.streams.listener import StreamListener
    from kaiju.streams.producer import StreamProducer
    from kaiju.streams.service import Streams
    from tests.streams.helpers import Recorder

    def build(listeners: list[dict] | None = None, recorder: dict | None = None, **settings):
        if backend_kind == "memory":
            from kaiju.locks.memory import MemoryLocks

            services = [MemoryStream(), MemoryLocks()]
        else:
            from kaiju.locks.redis import RedisLocks
            from kaiju.redis import RedisConnection
            from kaiju.streams.redis import RedisStream

            redis = request.getfixturevalue("redis_settings")(backend_kind)
            services = [RedisConnection(**redis, socket_timeout=3.0), RedisStream(), RedisLocks()]
        backend = services[0] if backend_kind == "memory" else services[1]
        rec = Recorder(**(recorder or {}))
        base = {"block_ms": 100, "claim_idle_ms": 300, "lock_check_ms": 50, "consumer": "c1"}
        specs = listeners or [settings]
        made = [StreamListener(name=f"listener{n}", **{**base, **spec}) for n, spec in enumerate(specs)]
        producer = StreamProducer()
        services += [Streams(), rec, RPCServer(), *made, producer]
        return services, backend, made, producer, rec

    return build
