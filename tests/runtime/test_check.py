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
        'with a port up to 65535 and a numeric db, got "localhost:6379"',
    ),
    "redis_url_port": (
        '  - cls: RedisConnection\n    settings: {url: "redis://:secret@localhost:99999/0"}\n',
        'services[RedisConnection].settings.url: expected a Redis URL "redis://host:port/db" (or rediss://, unix:///path) '
        'with a port up to 65535 and a numeric db, got "redis://:***@localhost:99999/0"',
    ),
    "cron_never_fires": (
        '  - cls: CronTask\n    name: nightly\n    settings: {cron: "0 3 31 2 *", call: "asyncio:sleep", params: [0]}\n',
        'services[nightly].settings.cron: expected a cron spec that fires, got "0 3 31 2 *": no date matches all of its fields',
    ),
    "cron_swapped_weekday": (
        '  - cls: CronTask\n    name: nightly\n    settings: {cron: "0 3 * * mon-fry", call: "asyncio:sleep", params: [0]}\n',
        "services[nightly].settings.cron: expected a cron spec of 5 fields (minute hour day month weekday), "
        '6 (seconds last) or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, '
        'got "0 3 * * mon-fry" (the weekday field \'mon-fry\': is not acceptable)',
    ),
    "missing_locks": (
        "  - cls: RPCServer\n  - cls: MemoryCache\n  - cls: CacheSessions\n    settings: {locks: mylocks}\n",
        'services[CacheSessions].settings.locks: sessions needs "mylocks", but no service has that name',
    ),
    "redis_url_unix_db": (
        '  - cls: RedisConnection\n    settings: {url: "unix:///tmp/redis.sock?db=x"}\n',
        'services[RedisConnection].settings.url: expected a Redis URL "redis://host:port/db" (or rediss://, unix:///path) '
        'with a port up to 65535 and a numeric db, got "unix:///tmp/redis.sock?db=x"',
    ),
    "unix_socket_dir": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {unix_socket: /nonexistent/dir/s.sock}\n",
        "services[HTTPServer].settings.unix_socket: expected a path in an existing directory, got /nonexistent/dir/s.sock",
    ),
    "host_literal": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {host: 999.1.1.1, port: 0}\n",
        "services[HTTPServer].settings.host: expected an IP address or a host name, got '999.1.1.1' (no such IPv4 address)",
    ),
    "rpc_path_slash": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {rpc_path: public/rpc, port: 0}\n",
        "services[HTTPServer].settings.rpc_path: expected a path starting with \"/\", got 'public/rpc'",
    ),
    "cookie_name": (
        '  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {cookie_name: "my cookie;", port: 0}\n',
        "services[HTTPServer].settings.cookie_name: expected a cookie name of letters, digits and !#$%&'*+-.^_`|~, "
        "got 'my cookie;'",
    ),
    "ops_port_taken": (
        "  - cls: RPCServer\n  - cls: HTTPServer\n    name: a\n    settings: {port: 18555}\n"
        "  - cls: HTTPServer\n    name: b\n    settings: {port: 18556, ops_port: 18555}\n",
        'services[b].settings.ops_port: expected an address no other service listens on, got 127.0.0.1:18555 (also used by "a")',
    ),
    "task_params": (
        "  - cls: RPCServer\n  - cls: kaiju.demo:DemoService\n  - cls: PeriodicTask\n    name: beat\n"
        "    settings: {interval: 5, method: demo.hello, params: {nme: x}}\n",
        "services[beat].settings.params: expected the params demo.hello takes, got {'nme': 'x'}: "
        "Invalid params: nme: Object contains unknown field `nme`",
    ),
    "redis_url_db": (
        '  - cls: RedisConnection\n    settings: {url: "redis://127.0.0.1:6379/x"}\n',
        'services[RedisConnection].settings.url: expected a Redis URL "redis://host:port/db" (or rediss://, unix:///path) '
        'with a port up to 65535 and a numeric db, got "redis://127.0.0.1:6379/x"',
    ),
    "redis_url_option_value": (
        '  - cls: RedisConnection\n    settings: {url: "redis://127.0.0.1:6379/0?socket_timeout=abc"}\n',
        "services[RedisConnection].settings.url: expected a Redis URL redis-py can read, "
        "got \"redis://127.0.0.1:6379/0?socket_timeout=abc\": Invalid value for 'socket_timeout' in connection URL.",
    ),
    "redis_url_unknown_option": (
        '  - cls: RedisConnection\n    settings: {url: "unix:///tmp/redis.sock?db=1&dbb=2"}\n',
        "services[RedisConnection].settings.url: expected a Redis URL redis-py can read, "
        "got \"unix:///tmp/redis.sock?db=1&dbb=2\": redis-py knows no option dbb",
    ),
    "topic_scope_null": (
        '  - cls: RPCServer\n    settings: {topics: {"orders.*": null}}\n',
        'services[RPCServer].settings.topics["orders.*"]: expected one of system, admin, user, guest, got null',
    ),
    "topic_pattern_no_topic_matches": (
        '  - cls: RPCServer\n    settings: {topics: {"orders *": user}}\n',
        "services[RPCServer].settings.topics: expected patterns of a topic's characters "
        "(letters, digits and _ . : / @ -) and * ? [ ] !, got 'orders *'",
    ),
    "optional_but_needed": (
        "  - cls: RPCServer\n    required: false\n  - cls: HTTPServer\n    settings: {port: 0}\n",
        'services[RPCServer].required: expected true: the required service "http" needs "rpc" '
        '(or give "http" required: false too)',
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
        "  - cls: RPCServer\n  - cls: kaiju.demo:DemoService\n  - cls: PeriodicTask\n    name: beat\n"
        "    settings: {interval: 1, method: demo.nope}\n",
        'services[beat].settings.method: expected a method some service of the app exposes, got "demo.nope"',
    ),
    "cron_spec": (
        '  - cls: CronTask\n    name: nightly\n    settings: {cron: "61 * * * *", call: "asyncio:sleep", params: [0]}\n',
        "services[nightly].settings.cron: expected a cron spec of 5 fields (minute hour day month weekday), "
        '6 (seconds last) or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, '
        'got "61 * * * *" (the minute field \'61\': is not acceptable, out of range)',
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


def test_an_env_value_no_template_uses_is_refused_with_the_near_miss(tmp_path):
    path = tmp_path / "app.yml"
    path.write_text('main: {name: t}\nservices:\n  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {port: "[PORT:0]"}\n')
    for command in ("check", "run"):
        proc = run("-c", str(path), "-e", "PROT=9000", command)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            "kaiju-run: -e: expected a key a template of the config uses, got PROT; did you mean PORT?"
        ), proc.stderr
    assert run("-c", str(path), "-e", "PORT=0", "check").returncode == 0


def test_a_bad_setting_names_where_its_value_came_from(tmp_path):
    path = tmp_path / "app.yml"
    path.write_text('main: {name: t}\nservices:\n  - cls: RPCServer\n  - cls: HTTPServer\n    settings: {port: "[PORT:0]"}\n')
    env_file = tmp_path / "app.env"
    env_file.write_text("PORT=eighty\n")
    expected = 'services[HTTPServer].settings.port: expected int, got "eighty"'
    for args, source in ((("-e", "PORT=eighty"), "-e"), (("-f", str(env_file)), str(env_file))):
        for command in ("check", "run"):
            proc = run("-c", str(path), *args, command)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert proc.stderr.strip().splitlines()[-1] == f"kaiju-run: {path}: {expected} (PORT from {source})"


def test_same_unix_socket(tmp_path):
    sock = tmp_path / "http.sock"
    services = (
        f"  - cls: RPCServer\n  - cls: HTTPServer\n    name: a\n    settings: {{unix_socket: {sock}}}\n"
        f"  - cls: HTTPServer\n    name: b\n    settings: {{unix_socket: {sock}}}\n"
    )
    line = f'services[a].settings.unix_socket: expected an address no other service listens on, got {sock} (also used by "b")'
    assert_check_and_run_agree(write(tmp_path, services), line)


def test_check_prints_each_tasks_next_fires_and_takes_cron_macros(tmp_path):
    services = (
        '  - cls: CronTask\n    name: nightly\n    settings: {cron: "@daily", timezone: Europe/Berlin, call: "asyncio:sleep", params: [0]}\n'
        '  - cls: CronTask\n    name: at_three\n    settings: {cron: "3 0 * * *", call: "asyncio:sleep", params: [0]}\n'
    )
    proc = run("-c", str(write(tmp_path, services)), "check")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("next fires (a start now):\n", 1)[1].splitlines()
    assert lines[0].startswith("  nightly: ") and lines[0].count("T00:00:00+01:00") + lines[0].count("T00:00:00+02:00") == 2
    assert lines[0].endswith("(@daily, Europe/Berlin)")
    assert lines[1].startswith("  at_three: ") and lines[1].count("T00:03:00+00:00") == 2, lines  # not 03:00: a swap shows


def test_a_missing_dependency_names_the_classes_that_would_do(tmp_path):
    proc = run("-c", str(write(tmp_path, "  - cls: RPCServer\n  - cls: Tasks\n    settings: {locks: null}\n  - cls: AuthService\n")), "check")
    assert proc.returncode == 2, proc.stderr
    assert "auth needs a UserStore service (users), and there is none: add a ConfigUsers" in proc.stderr, proc.stderr


def test_a_good_config_passes_check(tmp_path):
    services = (
        "  - cls: RPCServer\n  - cls: kaiju.demo:DemoService\n  - cls: HTTPServer\n    settings: {port: 0, scope: USER}\n"
        "  - cls: PeriodicTask\n    settings: {interval: 1, method: demo.tick}\n"
        '  - cls: RedisConnection\n    settings: {url: "unix:///tmp/redis.sock?db=1"}\n'
    )
    proc = run("-c", str(write(tmp_path, services)), "check")
    assert proc.returncode == 0, proc.stderr
    assert "layer 1:" in proc.stdout
