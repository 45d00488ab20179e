"""Two real `kaiju-run` processes sharing one Redis: a logout, a revoked token, a lockout
and a disabled user take effect in the other process at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import argon2
import msgspec
import pytest
import redis.asyncio

from kaiju.testing import free_port
from tests.auth.support import SECRET, Client, bearer, eventually

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
main: {{name: shared, env: test}}
packages: [tests.auth.redis_users]
services:
  - cls: RedisConnection
    settings: {{url: "{redis_url}"}}
  - cls: RedisCache
  - cls: RedisLocks
  - cls: RedisUsers
  - cls: CacheSessions
  - cls: AuthService
    settings: {{secret: "{secret}", max_failures: 3, lockout: 600}}
  - cls: RPCServer
  - cls: HTTPServer
    settings: {{port: "[PORT]"}}
"""
WITH_EVENTS = CONFIG + "  - cls: RedisEvents\n"  # each process remembers the callers it verified


@pytest.fixture
async def two_apps(tmp_path, redis_url):
    async with _two_apps(tmp_path, redis_url, CONFIG) as apps:
        yield apps


@pytest.fixture
async def two_apps_with_events(tmp_path, redis_url):
    async with _two_apps(tmp_path, redis_url, WITH_EVENTS) as apps:
        yield apps


@contextlib.asynccontextmanager
async def _two_apps(tmp_path, redis_url, template):
    config = tmp_path / "app.yml"
    config.write_text(template.format(redis_url=redis_url, secret=SECRET))
    store = redis.asyncio.from_url(redis_url)
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    for name, password in (("alice", "wonderland"), ("dora", "explorer")):
        await store.set(f"test_users.{name}", msgspec.json.encode({"password_hash": hasher.hash(password)}))
    ports = [free_port(), free_port()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kaiju", "-c", str(config), "-e", f"PORT={port}", "--log-level", "WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for port in ports
    ]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            clients = [Client(http, f"http://127.0.0.1:{port}/public/rpc") for port in ports]
            for client, proc in zip(clients, procs):
                async def up(client=client, proc=proc):
                    assert proc.poll() is None, proc.stderr.read()
                    return await client.result("auth.whoami")

                await eventually(up, timeout=60, what="the app answering")
            yield clients, store
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await store.aclose()


async def test_a_logout_in_one_process_ends_the_session_in_the_other(two_apps):
    (a, b), _ = two_apps
    sid = {"Session-Id": (await a.result("auth.login", {"username": "alice", "password": "wonderland"}))["session_id"]}
    assert (await b.result("auth.whoami", headers=sid))["user_id"] == "alice"
    assert await a.result("auth.logout", headers=sid) is True
    answer, headers = await b.call("auth.whoami", headers=sid)
    assert answer["result"]["user_id"] is None and headers["Session-Id"] == ""


async def test_a_token_revoked_in_one_process_is_refused_by_the_other(two_apps):
    (a, b), _ = two_apps
    pair = await a.result("auth.token", {"username": "alice", "password": "wonderland"})
    assert (await b.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == "alice"
    assert await b.result("auth.logout", headers=bearer(pair["access_token"])) is True
    assert (await a.error("auth.whoami", headers=bearer(pair["access_token"])))["data"]["type"] == "NotAuthorized"
    # a refresh token spent in one process gives no second pair in the other: within the grace
    # window (a client retrying), the same pair; after it, the login is revoked (REUSE config)
    second = await a.result("auth.token", {"username": "alice", "password": "wonderland"})
    renewed = await a.result("auth.refresh", {"refresh_token": second["refresh_token"]})
    assert await b.result("auth.refresh", {"refresh_token": second["refresh_token"]}) == renewed


async def test_failures_in_one_process_lock_the_username_out_in_the_other(two_apps):
    (a, b), _ = two_apps
    for _ in range(3):
        await a.error("auth.login", {"username": "alice", "password": "guess"})
    error = await b.error("auth.login", {"username": "alice", "password": "wonderland"})
    assert error["data"]["type"] == "NotAuthorized" and 0 < error["data"]["retry_after"] <= 600


async def test_disabling_a_user_in_the_store_ends_their_session_everywhere(two_apps):
    (a, b), store = two_apps
    sid = {"Session-Id": (await a.result("auth.login", {"username": "dora", "password": "explorer"}))["session_id"]}
    assert (await b.result("auth.whoami", headers=sid))["user_id"] == "dora"
    row = msgspec.json.decode(await store.get("test_users.dora"))
    await store.set("test_users.dora", msgspec.json.encode({**row, "disabled": True}))
    answer, headers = await b.call("auth.whoami", headers=sid)
    assert answer["result"]["user_id"] is None and headers["Session-Id"] == ""
    assert (await a.result("auth.whoami", headers=sid))["user_id"] is None


async def test_with_events_a_logout_in_one_process_ends_what_the_other_remembers(two_apps_with_events):
    (a, b), _ = two_apps_with_events
    sid = {"Session-Id": (await a.result("auth.login", {"username": "alice", "password": "wonderland"}))["session_id"]}
    pair = await a.result("auth.token", {"username": "dora", "password": "explorer"})
    for _ in range(2):  # verified once, then remembered by b
        assert (await b.result("auth.whoami", headers=sid))["user_id"] == "alice"
        assert (await b.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == "dora"
    assert await a.result("auth.logout", headers=sid) is True
    assert await a.result("auth.logout", headers=bearer(pair["access_token"])) is True

    async def b_forgot() -> bool:  # the notices cross the events channel (about a millisecond)
        session = (await b.result("auth.whoami", headers=sid))["user_id"] is None
        token = "error" in (await b.call("auth.whoami", headers=bearer(pair["access_token"])))[0]
        return session and token

    await eventually(b_forgot, what="the other process to hear the logouts")
