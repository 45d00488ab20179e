"""pytest plugin for kaiju apps (loaded through the `pytest11` entry point).

Fixtures:

- `redis_server`: a real redis-server on a free port for the test session
  (`RedisServer`: `.url`, `.port`, `.restart()`); skipped when none is installed,
  or failed when the environment sets KAIJU_REQUIRE_REDIS=1.
- `redis_url`: its URL, with the database flushed before each test.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest

from kaiju.testing.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("KAIJU_REQUIRE_REDIS") == "1":  # scripts/test sets it: no silent half-suite
            pytest.fail(message)
        pytest.skip(message)
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
