"""Rate limits (`RPCServer.rate_limits`): GCRA per limiter and subject, in memory or on Redis
(standalone, Sentinel, Cluster), refused calls answered TooManyRequests with
`data.retry_after` over a real HTTP server, stream calls slowed down instead, and the
default per-address limit of `auth.login`."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from kaiju import rpc
from kaiju.http.routes import route
from kaiju.http.server import HTTPServer
from kaiju.ratelimit.rate import Rate, RateLimit, gcra, retry_after
from kaiju.ratelimit.store import MemoryRates, RateLimiter, RedisRates, rate_key
from kaiju.rpc import RPCServer, Scope
from kaiju.rpc.access import Session
from kaiju.rpc.limits import DEFAULT_LOGIN_LIMIT, rate_limits
from kaiju.runtime.plan import validate_settings
from kaiju.runtime.service import App, Service
from kaiju.testing import free_port
from kaiju.testing.services import started


class Echo(Service):
    service_name = "echo"

    @rpc.method(permission=Scope.GUEST)
    async def echo(self, value: int = 0) -> int:
        return value

    @rpc.method(permission=Scope.GUEST)
    async def other(self) -> str:
        return "ok"


# -- the pure parts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("100/minute", 100, 60.0),
        ("5/30s", 5, 30.0),
        ("1/2h", 1, 7200.0),
        ("10 / second", 10, 1.0),
        ("3/days", 3, 86400.0),
    ],
)
def test_a_rate_reads_count_and_period(text, count, period):
    assert Rate.parts(text) == (count, period)
    assert Rate.parse(text) == text


@pytest.mark.parametrize("text", ["lots", "0/minute", "10/fortnight", "10/0s", "/minute", 10])
def test_a_bad_rate_says_what_was_expected(text):
    with pytest.raises(ValueError, match="expected a rate"):
        Rate.parse(text)


def test_gcra_allows_a_burst_then_one_per_interval():
    rule = RateLimit(methods="x", rate=Rate("60/minute"), burst=3)
    assert (rule.interval, rule.tolerance) == (1.0, 2.0)
    tat, now = 0.0, 100.0
    for _ in range(3):
        tat, wait = gcra(tat, now, rule.interval, rule.tolerance)
        assert wait == 0.0
    same, wait = gcra(tat, now, rule.interval, rule.tolerance)
    assert same == tat and wait == pytest.approx(1.0)
    tat, wait = gcra(tat, now + 1.0, rule.interval, rule.tolerance)  # one interval later: one more
    assert wait == 0.0
    assert retry_after(0.2) == 1 and retry_after(2.5) == 3


def test_burst_defaults_to_the_rates_count():
    assert RateLimit(methods="x", rate=Rate("10/second")).tolerance == pytest.approx(0.9)


def test_memory_rates_count_each_key_apart():
    rates = MemoryRates()
    assert rates.take("a", 60.0, 0.0) is None
    assert rates.take("a", 60.0, 0.0) > 0
    assert rates.take("b", 60.0, 0.0) is None
    assert len(rates) == 2


def test_a_key_is_one_slot_whatever_the_subject():
    from kaiju import keys

    ns = App(name="shop", env="prod").namespace
    key = rate_key(ns, "shop.*.user.0", "u:{evil}")
    assert keys.hash_tag(key) == key[1:-1] and "evil" not in key
    assert rate_key(ns, "l", "ip:10.0.0.1") == "{prod.shop._rate.l.ip:10.0.0.1}"


def test_a_bad_rule_is_refused_with_its_key_path():
    with pytest.raises(msgspec.ValidationError, match=r"expected a rate.*rate_limits\[0\]\.rate"):
        validate_settings(RPCServer, {"rate_limits": [{"methods": "echo.*", "rate": "lots"}]})
    with pytest.raises(msgspec.ValidationError, match=r"rate_limits\[0\]\.per"):
        validate_settings(RPCServer, {"rate_limits": [{"methods": "echo.*", "rate": "1/s", "per": "planet"}]})


def test_auth_login_gets_a_limit_unless_a_rule_covers_it():
    server = RPCServer()
    server.bind(App(name="a", env="test"))
    limits = rate_limits([], {"auth.login", "echo.echo"}, None, server)
    assert limits is not None and [lim.rule for lim in limits.limiters] == [DEFAULT_LOGIN_LIMIT]
    own = RateLimit(methods="auth.*", rate=Rate("5/minute"))
    limits = rate_limits([own], {"auth.login"}, None, server)
    assert limits is not None and [lim.rule for lim in limits.limiters] == [own]
    assert rate_limits([], {"echo.echo"}, None, server) is None  # nothing to limit: no middleware


# -- over HTTP, on each store ------------------------------------------------------------


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
def store_services(request):
    """The services giving the rate limits their store, and the RPCServer setting naming it."""

    def make():
        if request.param == "memory":
            return [], {}
        from kaiju.redis import RedisConnection

        return [RedisConnection(**request.getfixturevalue("redis_settings")(request.param))], {}

    return make


LIMITS = [{"methods": "echo.echo", "per": "ip", "rate": "2/minute", "burst": 2}]


async def post(session: aiohttp.ClientSession, port: int, method: str) -> tuple[int, dict]:
    async with session.post(
        f"http://127.0.0.1:{port}/public/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method}
    ) as resp:
        return resp.status, await resp.json()


async def test_a_call_over_the_limit_is_refused_with_retry_after(store_services):
    extra, _ = store_services()
    port = free_port()
    server = RPCServer(rate_limits=validate_settings(RPCServer, {"rate_limits": LIMITS})["rate_limits"])
    async with started(*extra, Echo(), server, HTTPServer(port=port)), aiohttp.ClientSession() as session:
        assert [(await post(session, port, "echo.echo"))[1].get("result") for _ in range(2)] == [0, 0]
        status, body = await post(session, port, "echo.echo")
        assert status == 200  # a JSON-RPC error like any other
        assert body["error"]["code"] == -32005 and body["error"]["data"]["type"] == "TooManyRequests"
        assert 0 < body["error"]["data"]["retry_after"] <= 30
        assert (await post(session, port, "echo.other"))[1]["result"] == "ok"  # another method: no limit
        assert await server.call("echo.echo", {"value": 3}) == 3  # a call from inside the app: not limited


async def test_two_servers_on_one_redis_share_a_limit(redis_settings):
    from kaiju.redis import RedisConnection

    rules = validate_settings(RPCServer, {"rate_limits": LIMITS})["rate_limits"]
    ports = free_port(), free_port()
    apps = [App(name="shop", env="test"), App(name="shop", env="test")]
    async with (
        started(
            RedisConnection(**redis_settings()),
            Echo(),
            RPCServer(rate_limits=rules),
            HTTPServer(port=ports[0]),
            app=apps[0],
        ),
        started(
            RedisConnection(**redis_settings()),
            Echo(),
            RPCServer(rate_limits=rules),
            HTTPServer(port=ports[1]),
            app=apps[1],
        ),
        aiohttp.ClientSession() as session,
    ):
        answers = [await post(session, port, "echo.echo") for port in (ports[0], ports[1], ports[0], ports[1])]
    assert ["result" in body for _, body in answers] == [True, True, False, False]


async def test_a_stream_call_waits_its_turn_instead_of_being_refused():
    rules = validate_settings(
        RPCServer, {"rate_limits": [{"methods": "echo.*", "per": "global", "rate": "20/second", "burst": 1}]}
    )["rate_limits"]
    server = RPCServer(rate_limits=rules)
    async with started(Echo(), server):
        body = b'{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"value":7}}'
        answers = [await server.handle(body, scope=Scope.SYSTEM, transport="stream") for _ in range(3)]
        refused = await server.handle(body, scope=Scope.GUEST, transport="http", client="10.1.1.1")
    assert [msgspec.json.decode(a.body)["result"] for a in answers] == [7, 7, 7]
    assert msgspec.json.decode(refused.body)["error"]["data"]["type"] == "TooManyRequests"


async def test_when_the_limits_are_the_only_middleware_they_wrap_only_the_methods_they_name(monkeypatch):
    """An app serving a limited method (auth.login's default limit, or a rule of its own) and
    no other middleware: a plain call of another method goes straight to the executor."""
    from kaiju.rpc.limits import RateLimits

    seen: list[str] = []
    counting = RateLimits.__call__

    async def spy(self, call, call_next):
        seen.append(call.method)
        return await counting(self, call, call_next)

    monkeypatch.setattr(RateLimits, "__call__", spy)
    rules = validate_settings(RPCServer, {"rate_limits": [{"methods": "echo.other", "rate": "100/second"}]})
    server = RPCServer(rate_limits=rules["rate_limits"])
    async with started(Echo(), server):
        for body in (
            b'[{"jsonrpc":"2.0","id":1,"method":"echo.echo"}]',  # a batch: the general path, the whole chain
            b'{"jsonrpc":"2.0","id":2,"method":"echo.echo","params":{"value":1}}',  # plain, named by no rule
            b'{"jsonrpc":"2.0","id":3,"method":"echo.other"}',  # plain, limited
        ):
            answer = await server.handle(body, scope=Scope.GUEST, transport="http", client="10.1.1.2")
            assert b'"result"' in answer.body
    assert seen == ["echo.echo", "echo.other"]


async def test_a_guest_counts_by_address_under_a_per_user_limit():
    rules = validate_settings(RPCServer, {"rate_limits": [{"methods": "echo.*", "per": "user", "rate": "1/minute"}]})[
        "rate_limits"
    ]
    server = RPCServer(rate_limits=rules)
    body = b'{"jsonrpc":"2.0","id":1,"method":"echo.other"}'
    async with started(Echo(), server):
        first = [await server.handle(body, transport="http", client=ip) for ip in ("10.0.0.1", "10.0.0.2")]
        again = await server.handle(body, transport="http", client="10.0.0.1")
    assert [msgspec.json.decode(a.body).get("result") for a in first] == ["ok", "ok"]
    assert "error" in msgspec.json.decode(again.body)


async def test_per_user_counts_a_users_sessions_together_and_per_session_counts_each():
    rules = validate_settings(
        RPCServer,
        {
            "rate_limits": [
                {"methods": "echo.echo", "per": "user", "rate": "1/minute"},
                {"methods": "echo.other", "per": "session", "rate": "1/minute"},
            ]
        },
    )["rate_limits"]
    server = RPCServer(rate_limits=rules)
    sessions = [Session(id="s1", user_id=7), Session(id="s2", user_id=7)]

    async def answers(method: str) -> list[bool]:
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": method})
        done = [await server.handle(body, transport="http", client="10.0.0.1", session=s) for s in sessions]
        return ["result" in msgspec.json.decode(a.body) for a in done]

    async with started(Echo(), server):
        assert await answers("echo.echo") == [True, False]  # one user, two sessions: one count
        assert await answers("echo.other") == [True, True]  # a count per session


class Uploads(Service):
    """A route handler limited by the same `RateLimiter` as the RPC calls: 429 and Retry-After."""

    service_name = "uploads"

    def __init__(self, redis: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.redis = redis

    async def start(self) -> None:
        store = RedisRates(self.app.services["redis"]) if self.redis else MemoryRates()
        rule = RateLimit(methods="upload", rate=Rate("2/minute"))
        self.limiter = RateLimiter(rule, "upload", store, self.app.namespace)

    @route("POST", "/upload")
    async def upload(self, request: web.BaseRequest) -> web.Response:
        wait = await self.limiter.take(request.remote or "-")
        if wait is not None:
            headers = {"Retry-After": str(retry_after(wait))}
            return web.json_response({"error": "too many requests"}, status=429, headers=headers)
        return web.json_response({"ok": True})


async def test_a_route_handler_answers_429_with_retry_after(store_services):
    extra, _ = store_services()
    port = free_port()
    services = [*extra, Uploads(redis=bool(extra)), RPCServer(), HTTPServer(port=port)]
    async with started(*services), aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(3):
            async with session.post(f"http://127.0.0.1:{port}/upload") as resp:
                statuses.append(resp.status)
                after = resp.headers.get("Retry-After")
    assert statuses == [200, 200, 429]
    assert after is not None and 1 <= int(after) <= 30  # 2/minute: one call each 30 s
