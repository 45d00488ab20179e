"""pytest plugin for kaiju apps (loaded through the `pytest11` entry point).

Fixtures:

- `redis_server`: a real redis-server on a free port for the test session
  (`RedisServer`: `.url`, `.port`, `.restart()`); skipped when none is installed,
  or failed when the environment sets KAIJU_REQUIRE_REDIS=1.
- `redis_url`: its URL, with the database flushed before each test.
- `redis_sentinel_set`, `redis_cluster_set`: a Sentinel set-up (a master, a replica, three
  sentinels) and a three-master Cluster (a replica each) for the test session (`RedisSentinelSet`,
  `RedisClusterSet`), started on first use;
- `redis_settings`: `redis_settings(mode)` gives `RedisConnection` settings of a flushed
  test server, mode "standalone" (or "redis"), "sentinel" or "cluster".
- `kaiju_config`: the app's config files (the `kaiju_config` ini option, else the
  `KAIJU_CONFIG` environment variable, both path lists); override it in a conftest.py;
- `kaiju_app_options`: keyword arguments of `TestApp` (`settings`, `replace`, `redis`,
  `env`, ...), empty by default; override it (or parametrize it indirectly) per test;
- `kaiju_app`: a `TestApp` from those, started in the test's loop and stopped after it;
- `kaiju_spans`: the spans of `kaiju_app`, recorded in memory (a test asking for it gets
  an app that records every span: `kaiju.telemetry.memory.SpanRecorder`, with `spans()`,
  `one(name)`, `parent_of(span)`, `children(span)`).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kaiju.testing.redis import RedisClusterSet, RedisSentinelSet, RedisServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("kaiju_config", "config files of the app under test (kaiju_app fixture)", type="paths", default=[])


def _require_redis() -> None:
    if not shutil.which("redis-server"):
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("KAIJU_REQUIRE_REDIS") == "1":  # scripts/test sets it: no silent half-suite
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    _require_redis()
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.ping():  # a test may have stopped it
        redis_server.start()
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        sock.recv(16)
    return redis_server.url


@pytest.fixture(scope="session")
def redis_sentinel_set() -> Iterator[RedisSentinelSet]:
    _require_redis()
    sentinel = RedisSentinelSet()
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.cleanup()


@pytest.fixture(scope="session")
def redis_cluster_set() -> Iterator[RedisClusterSet]:
    _require_redis()
    cluster = RedisClusterSet(replicas=1)  # a replica per master: WAIT (RedisStream replicas) works
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest) -> Callable[[str], dict[str, Any]]:
    flushed: set[str] = set()  # once per test: a second app of the test sees the first one's data

    def settings(mode: str = "standalone") -> dict[str, Any]:
        if mode in ("standalone", "redis"):
            return {"url": request.getfixturevalue("redis_url")}
        if mode not in ("sentinel", "cluster"):
            raise ValueError(f"a Redis mode is standalone, sentinel or cluster, got {mode!r}")
        servers = request.getfixturevalue(f"redis_{mode}_set")
        if mode not in flushed:
            servers.flush()
            flushed.add(mode)
        return servers.settings

    return settings


@pytest.fixture
def kaiju_config(request: pytest.FixtureRequest) -> list[str]:
    files = [str(p) for p in request.config.getini("kaiju_config")]
    if not files and os.environ.get("KAIJU_CONFIG"):
        files = [p for p in os.environ["KAIJU_CONFIG"].split(os.pathsep) if p]
    if not files:
        pytest.fail(
            "kaiju_app needs the app's config: set the kaiju_config ini option, KAIJU_CONFIG, "
            "or override the kaiju_config fixture"
        )
    return files


@pytest.fixture
def kaiju_app_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def kaiju_app(
    kaiju_config: Any, kaiju_app_options: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    from kaiju.testing.app import TestApp

    options = dict(kaiju_app_options)
    if "kaiju_spans" in request.fixturenames:
        options.setdefault("spans", True)
    async with TestApp(kaiju_config, **options) as app:
        yield app


@pytest.fixture
def kaiju_spans(kaiju_app: Any) -> Any:
    return kaiju_app.recorder
