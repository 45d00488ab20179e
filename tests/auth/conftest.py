from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest

from kaiju.auth.service import AuthService
from kaiju.auth.users import ConfigUsers
from kaiju.cache.base import Cache
from kaiju.cache.memory import MemoryCache
from kaiju.events.base import Events
from kaiju.http.server import HTTPServer
from kaiju.locks.memory import MemoryLocks
from kaiju.ratelimit.rate import Rate, RateLimit
from kaiju.rpc import RPCServer
from kaiju.auth.sessions import CacheSessions
from kaiju.runtime.service import App
from kaiju.testing.services import started
from tests.auth.support import SECRET, USERS, Client, Orders


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster", "memory+events", "redis+events"])
def backend(request) -> str:
    """Where the app keeps its state; "+events" adds an Events service (RedisEvents on Redis), with
    which AuthService and CacheSessions remember the callers they verified (kaiju.auth.known)."""
    return request.param


@pytest.fixture
def shared(backend, request):
    """Makes the cache and locks services of the backend (and events): new ones for each app."""
    store, _, events = backend.partition("+")

    def make() -> list:
        if store == "memory":
            return [MemoryCache(), MemoryLocks()] + ([Events()] if events else [])
        from kaiju.cache.redis import RedisCache
        from kaiju.events.redis import RedisEvents
        from kaiju.locks.redis import RedisLocks
        from kaiju.redis import RedisConnection

        redis = request.getfixturevalue("redis_settings")(store)
        return [RedisConnection(**redis), RedisCache(), RedisLocks()] + ([RedisEvents()] if events else [])

    return make


# These tests count the account's throttle and the address's failed attempts: the per-address
# rate limit of auth.login (tests/rpc/test_rate_limits.py) is set out of their way.
NO_LOGIN_RATE_LIMIT = [RateLimit(methods="auth.login", rate=Rate("100000/second"))]


def app_services(shared_services: list, users=None, http=None, rate_limits=None, **auth_settings) -> list:
    return [
        *shared_services,
        users if users is not None else ConfigUsers(users=USERS),
        CacheSessions(ttl=60),
        AuthService(**{"secret": SECRET, **auth_settings}),
        Orders(),
        RPCServer(rate_limits=NO_LOGIN_RATE_LIMIT if rate_limits is None else rate_limits),
        HTTPServer(**{"port": 0, "session_cookie": True, **(http or {})}),
    ]


@pytest.fixture
async def make_app(shared):
    """Start an app serving HTTP on a free port: `async with make_app(**auth_settings) as app`."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(users=None, http=None, env="test", rate_limits=None, **auth_settings):
        services = app_services(shared(), users, http, rate_limits, **auth_settings)
        async with started(*services, app=App(name="authtest", env=env)):
            http = services[-1]
            # unsafe: keep cookies of an IP-address host (127.0.0.1)
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), cookie_jar=jar) as client:
                yield SimpleNamespace(
                    client=Client(client, http.url), http=client, url=http.url,
                    auth=services[-4], sessions=services[-5], users=services[-6], orders=services[-3],
                    cache=next(s for s in services if isinstance(s, Cache)),
                    # with an Events service, verified callers are remembered (kaiju.auth.known)
                    remembers=any(isinstance(s, Events) for s in services),
                )

    return make


@pytest.fixture
async def app(make_app):
    async with make_app() as app:
        yield app
