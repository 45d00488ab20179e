"""`kaiju-run check` finds what a start would: the same bad config, the same one line, exit 2.

Each case runs `kaiju-run check` and `kaiju-run run` as real processes on one config; both
must exit 2 with the same `FILE: services[NAME].settings.KEY: ...` line, and `run` must
start nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.runtime.test_cli import run


def write(tmp_path: Path, services: str) -> Path:
    path = tmp_path / "app.yml"
    path.write_text(f"main:\n  name: t\n  shutdown_timeout: 10\nservices:\n{services}")
    return path


def assert_check_and_run_agree(path: Path, line: str) -> None:
    expected = f"kaiju-run: {path}: {line}"
    for command in ("check", "run"):
        proc: subprocess.CompletedProcess = run("-c", str(path), "--log-format", "plain", command)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (command, proc.stderr)
        assert lines[-1] == expected, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
        assert "listening" not in proc.stderr and "started" not in proc.stderr, (command, proc.stderr)


CASES = {
    "scope": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {port: 0, scope: superuser}\n",
        'services[HTTPServer].settings.scope: expected one of system, admin, user, guest, got "superuser"',
    ),
    "max_parallel_tasks": (
        "  - cls: RPCServer\n    settings: {max_parallel_tasks: 0}\n",
        "services[RPCServer].settings.max_parallel_tasks: expected int >= 1, got 0",
    ),
    "request_times": (
        "  - cls: RPCServer\n    settings: {default_request_time: 900, max_request_time: 600}\n",
        "services[RPCServer].settings.default_request_time: expected at most max_request_time (600.0), got 900.0",
    ),
    "redis_url_scheme": (
        '  - cls: RedisConnection\n    settings: {url: "localhost:6379"}\n',
        'services[RedisConnection].settings.url: expected a Redis URL "redis://host:port/db" (or rediss://, unix:///path) '
        'with a port up to 65535, got "localhost:6379"',
    ),
    "redis_url_port": (
        '  - cls: RedisConnection\n    settings: {url: "redis://:secret@localhost:99999/0"}\n',
        'services[RedisConnection].settings.url: expected a Redis URL "redis://host:port/db" (or rediss://, unix:///path) '
        'with a port up to 65535, got "redis://:***@localhost:99999/0"',
    ),
    "redis_modes_mixed": (
        '  - cls: RedisConnection\n    settings: {url: "redis://h:6379/0", sentinels: ["h:26379"], master_name: m}\n',
        (
            "services[RedisConnection].settings.sentinels: expected one of url, sentinels or cluster_nodes, "
            "got url and sentinels"
        ),
    ),
    "redis_cluster_node": (
        '  - cls: RedisConnection\n    settings: {cluster_nodes: ["h:7000", "h"]}\n',
        'services[RedisConnection].settings.cluster_nodes: expected host:port items, got "h" at [1]',
    ),
    "batch_size": (
        "  - cls: RPCServer\n  - cls: MemoryStream\n  - cls: StreamListener\n    settings: {batch_size: 0}\n",
        "services[StreamListener].settings.batch_size: expected int >= 1, got 0",
    ),
    "task_method": (
        "  - cls: RPCServer\n  - cls: DemoService\n  - cls: PeriodicTask\n    name: beat\n"
        "    settings: {interval: 1, method: demo.nope}\n",
        'services[beat].settings.method: expected a method some service of the app exposes, got "demo.nope"',
    ),
    "cron_spec": (
        '  - cls: CronTask\n    name: nightly\n    settings: {cron: "61 * * * *", call: "asyncio:sleep", params: [0]}\n',
        "services[nightly].settings.cron: expected a cron spec of 5 fields (minute hour day month weekday) "
        'or 6 (seconds last), got "61 * * * *"',
    ),
    "same_port": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    name: a\n    settings: {port: 18080}\n"
        "  - cls: HTTPServer\n    name: b\n    settings: {host: 0.0.0.0, port: 18080}\n",
        'services[a].settings.port: expected an address no other service listens on, got 127.0.0.1:18080 (also used by "b")',
    ),
    "same_port_localhost": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    name: a\n    settings: {host: localhost, port: 18081}\n"
        "  - cls: HTTPServer\n    name: b\n    settings: {port: 18081}\n",
        'services[a].settings.port: expected an address no other service listens on, got localhost:18081 (also used by "b")',
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_run_report_the_same_line(tmp_path, case):
    services, line = CASES[case]
    assert_check_and_run_agree(write(tmp_path, services), line)


def test_same_unix_socket(tmp_path):
    sock = tmp_path / "http.sock"
    services = (
        f"  - cls: RPCServer\n  - cls: HTTPServer\n    name: a\n    settings: {{unix_socket: {sock}}}\n"
        f"  - cls: HTTPServer\n    name: b\n    settings: {{unix_socket: {sock}}}\n"
    )
    line = f'services[a].settings.unix_socket: expected an address no other service listens on, got {sock} (also used by "b")'
    assert_check_and_run_agree(write(tmp_path, services), line)


def test_a_good_config_passes_check(tmp_path):
    services = (
        "  - cls: RPCServer\n  - cls: DemoService\n  - cls: HTTPServer\n    settings: {port: 0, scope: USER}\n"
        "  - cls: PeriodicTask\n    settings: {interval: 1, method: demo.tick}\n"
        '  - cls: RedisConnection\n    settings: {url: "unix:///tmp/redis.sock?db=1"}\n'
    )
    proc = run("-c", str(write(tmp_path, services)), "check")
    assert proc.returncode == 0, proc.stderr
    assert "layer 1:" in proc.stdout
