"""RedisConnection against a real redis-server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

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
    # built in code, not from a config: start() checks it as check would
    with pytest.raises(ValueError, match='expected a Redis URL redis-py can read, got "http://nowhere"'):
        async with started(RedisConnection(url="http://nowhere")):
            pass


def test_mask_url():
    assert mask_url("redis://:pw@h:6379/1") == "redis://:***@h:6379/1"
    assert mask_url("rediss://h:6380/0") == "rediss://h:6380/0"


@pytest.fixture
def password_redis(redis_server):
    """A second redis-server that requires a password (the `redis_server` fixture proves one is installed)."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def test_password_setting(password_redis):
    conn = RedisConnection(url=f"redis://127.0.0.1:{password_redis}/0", password="s3cret")
    async with started(conn):
        assert await conn.client.ping()


async def test_wrong_password_is_a_clear_error(password_redis):
    conn = RedisConnection(url=f"redis://:wrong@127.0.0.1:{password_redis}/0")
    with pytest.raises(RedisUnavailable) as err:
        async with started(conn):
            pass
    assert f"redis://:***@127.0.0.1:{password_redis}/0" in str(err.value)
    assert "wrong" not in str(err.value)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"url": "redis://h:6379/0", "cluster_nodes": ["h:7000"]}, "cluster_nodes"),
        ({"sentinels": ["h:26379"], "cluster_nodes": ["h:7000"], "master_name": "m"}, "cluster_nodes"),
        ({"sentinels": ["h:26379"]}, "master_name"),
        ({"master_name": "m"}, "sentinels"),
        ({"sentinels": ["h:26379", "h:port"], "master_name": "m"}, "sentinels"),
    ],
)
def test_one_mode_at_a_time(settings, key):
    from kaiju.runtime.service import SettingError

    with pytest.raises(SettingError) as err:
        RedisConnection(**settings).check()
    assert err.value.key == key


def test_the_mode_follows_the_settings():
    assert RedisConnection().mode == "standalone"
    assert RedisConnection(sentinels=["h:26379"], master_name="m").mode == "sentinel"
    assert RedisConnection(cluster_nodes=["h:7000", "[::1]:7001"]).mode == "cluster"


@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
async def test_a_mode_that_does_not_answer_fails_the_start_clearly(mode):
    where = [f"127.0.0.1:{free_port()}"]
    settings = {"sentinels": where, "master_name": "m"} if mode == "sentinel" else {"cluster_nodes": where}
    conn = RedisConnection(**settings, connect_timeout=1, password="hunter2")
    with pytest.raises(RedisUnavailable) as err:
        async with started(conn):
            pass
    assert "does not answer" in str(err.value) and where[0] in str(err.value)
    assert "hunter2" not in str(err.value)


def test_check_says_which_extra_to_install_when_redis_py_is_missing(tmp_path) -> None:
    from tests.runtime.test_cli import ROOT, run

    fake = tmp_path / "site" / "redis"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("not installed", name="redis")\n')
    path = tmp_path / "app.yml"
    path.write_text("main: {name: t}\nservices:\n  - cls: RedisConnection\n")
    for command in ("check", "run"):
        proc = run("-c", str(path), command, env={"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}"})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"kaiju-run: {path}: services[RedisConnection].settings: RedisConnection: needs redis-py, "
            'and redis does not import: pip install "kaiju-runner[redis]"'
        )
        assert "Traceback" not in proc.stderr


def test_ssl_cert_reqs_takes_one_of_three_words(tmp_path) -> None:
    from tests.runtime.test_cli import run

    path = tmp_path / "app.yml"
    path.write_text("main: {name: t}\nservices:\n  - cls: RedisConnection\n    settings: {ssl_cert_reqs: strict}\n")
    proc = run("-c", str(path), "check")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f'kaiju-run: {path}: services[RedisConnection].settings.ssl_cert_reqs: expected one of required, optional, none, got "strict"'
    )


@pytest.mark.parametrize("mode", ["standalone", "sentinel"])
async def test_commands_beyond_max_connections_wait_for_a_free_one(redis_settings, mode):
    """One connection, three blocking reads at once: the second and third wait their turn
    (pool_timeout) instead of failing with MaxConnectionsError, on one server and on Sentinel."""
    connection = RedisConnection(**redis_settings(mode), max_connections=1, pool_timeout=10)
    async with started(connection):
        client = connection.client
        reads = [client.execute_command("BLPOP", f"{{t}}.empty.{n}", "0.2") for n in range(3)]
        assert await asyncio.gather(*reads) == [None, None, None]
