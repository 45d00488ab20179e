"""`kaiju-run` as a real process: commands, config errors, real signals, systemd notify."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaiju.testing import OutputLines

ROOT = Path(__file__).resolve().parents[2]
PKG = "tests.runtime.sample_services"


def write_config(tmp_path: Path, services: str, main: str = "") -> Path:
    path = tmp_path / "app.yml"
    path.write_text(f"main:\n  name: t\n  shutdown_timeout: 10\n{main}packages: [{PKG}]\nservices:\n{services}")
    return path


def recorder(cls: str, events: Path, name: str = "", **settings) -> str:
    items = {"events": str(events), **settings}
    body = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {str(v).lower()}" for k, v in items.items())
    text = f"  - cls: {cls}\n"
    if name:
        text += f"    name: {name}\n"
    return text + f"    settings: {{{body}}}\n"


def kaiju(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "kaiju", *args], cwd=ROOT, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    proc = kaiju(*args, **kwargs)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for_line(events: Path, line: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists() and line in events.read_text().splitlines():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {line!r}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{line!r} not seen in {timeout}s: {events.read_text() if events.exists() else ''}")


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


@pytest.fixture
def events(tmp_path):
    return tmp_path / "events"


# -- commands ---------------------------------------------------------------------


def test_check_prints_layers(tmp_path, events):
    cfg = write_config(tmp_path, recorder("Api", events) + recorder("Cache", events) + recorder("Database", events))
    result = run("-c", str(cfg), "check")
    assert result.returncode == 0, result.stderr
    assert "layer 1:\n  db [tests.runtime.sample_services:Database]" in result.stdout
    assert "layer 3:\n  api [tests.runtime.sample_services:Api] <- cache, db" in result.stdout
    assert not events.exists()  # nothing started


def test_check_of_the_example_config():
    result = run("-c", "conf/example.yml", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("example ") and "layer 1:" in result.stdout


def test_config_prints_effective_yaml_with_secrets_masked(tmp_path):
    cfg = tmp_path / "app.yml"
    cfg.write_text('main: {name: t}\netc:\n  db_password: "[PW]"\n  url: "redis://:[PW]@host:6379/0"\n  port: "[PORT:80]"\n')
    result = run("-c", str(cfg), "-e", "PW=hunter2", "-e", "PORT=8080", "config")
    assert result.returncode == 0, result.stderr
    assert "db_password: '***'" in result.stdout and "port: 8080" in result.stdout
    assert "hunter2" not in result.stdout
    shown = run("-c", str(cfg), "-e", "PW=hunter2", "config", "--show-secrets")
    assert "db_password: hunter2" in shown.stdout


def test_env_sources_precedence(tmp_path):
    cfg = tmp_path / "app.yml"
    cfg.write_text('main: {name: t}\netc: {a: "[A]", b: "[B]", c: "[C:dflt]"}\n')
    env_file = tmp_path / ".env"
    env_file.write_text("A=from_file\nB=from_file\n")
    result = run("-c", str(cfg), "-f", str(env_file), "-e", "B=x=y", "config", env={"A": "from_os"})
    assert "a: from_os" in result.stdout and "b: x=y" in result.stdout and "c: dflt" in result.stdout
    result = run("-c", str(cfg), "-f", str(env_file), "--no-os-env", "config", env={"A": "from_os"})
    assert "a: from_file" in result.stdout


def test_version_and_help():
    assert run("--version").stdout.startswith("kaiju ")
    help_text = run("--help").stdout
    for word in ("--config", "--env-file", "--no-os-env", "--log-format", "check", "config", "run"):
        assert word in help_text


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("kaiju-run")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("kaiju ")


# -- config errors: one line, file and key path, exit 2, no traceback --------------

CASES = {
    "wrong type": ("  - cls: Database\n    settings: {delay: slow}\n", 'services[Database].settings.delay: expected float, got "slow"'),
    "unknown key": ("  - cls: Database\n    setings: {}\n", "services[Database].setings: unknown key"),
    "unknown setting": ("  - cls: Database\n    settings: {dealy: 1}\n", "services[Database].settings.dealy: unknown key"),
    "unknown class": ("  - cls: Databse\n", 'services[Databse].cls: unknown service class "Databse"'),
    "template without value": ("  - cls: Database\n    settings: {delay: '[NO_SUCH_KEY]'}\n", "NO_SUCH_KEY"),
    "duplicate name": ("  - cls: Database\n  - cls: Worker\n    name: db\n", 'duplicate service name "db"'),
    "missing dependency": ("  - cls: Cache\n", "cache needs a Database service (db), and there is none"),
    "cycle": (
        "  - cls: tests.runtime.test_plan:Loop1\n  - cls: tests.runtime.test_plan:Loop2\n",
        "dependency cycle: loop1 -> loop2 -> loop1",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_exits_2_with_one_line(tmp_path, case):
    services, expected = CASES[case]
    cfg = write_config(tmp_path, services)
    for command in ("check", "run"):
        result = run("-c", str(cfg), "--no-os-env", command)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"kaiju-run: {cfg}: ") and expected in message


def test_missing_file(tmp_path):
    result = run("-c", str(tmp_path / "nope.yml"), "check")
    assert result.returncode == 2 and str(tmp_path / "nope.yml") in result.stderr and "Traceback" not in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path):
    cfg = tmp_path / "bad.yml"
    cfg.write_text("main:\n  name: t\n  env: [oops\n")
    result = run("-c", str(cfg), "check")
    assert result.returncode == 2 and f"{cfg}: line " in result.stderr and "Traceback" not in result.stderr


def test_no_config_given():
    result = run("check")
    assert result.returncode == 2 and "-c FILE" in result.stderr


# -- running, with real signals ---------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_running_stops_in_reverse(tmp_path, events, signum):
    cfg = write_config(tmp_path, recorder("Api", events) + recorder("Cache", events) + recorder("Database", events))
    proc = kaiju("-c", str(cfg))
    wait_for_line(events, "started api", proc)
    proc.send_signal(signum)
    code, err = finish(proc)
    assert code == 0, err
    assert events.read_text().splitlines()[-3:] == ["stop api", "stop cache", "stop db"]


def test_sigterm_during_start_up_stops_what_has_started(tmp_path, events):
    cfg = write_config(
        tmp_path, recorder("Database", events) + recorder("Cache", events, delay=30) + recorder("Api", events),
    )
    proc = kaiju("-c", str(cfg))
    wait_for_line(events, "start cache", proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    assert "start-up interrupted by SIGTERM" in err
    assert events.read_text().splitlines() == ["start db", "started db", "start cache", "stop cache", "stop db"]


def test_second_signal_exits_at_once(tmp_path, events):
    cfg = write_config(tmp_path, recorder("Database", events, stop_delay=30))
    proc = kaiju("-c", str(cfg))
    wait_for_line(events, "started db", proc)
    proc.send_signal(signal.SIGTERM)
    wait_for_line(events, "stopping db", proc)  # the first one has begun the graceful stop
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert "stop db" not in events.read_text()


def test_failed_start_rolls_back_and_exits_1(tmp_path, events):
    cfg = write_config(
        tmp_path, recorder("Database", events) + recorder("Cache", events) + recorder("Api", events, fail=True),
    )
    code, err = finish(kaiju("-c", str(cfg)))
    assert code == 1
    assert 'kaiju-run: service "api" failed to start: RuntimeError: api was told to fail' in err
    assert "Traceback" not in err
    assert events.read_text().splitlines()[-3:] == ["stop api", "stop cache", "stop db"]


def test_optional_service_failure_keeps_the_app_running(tmp_path, events):
    services = recorder("Database", events) + recorder("Cache", events, fail=True) + recorder("Api", events)
    services = services.replace("  - cls: Cache\n", "  - cls: Cache\n    required: false\n")
    services = services.replace("  - cls: Api\n", "  - cls: Api\n    required: false\n")
    proc = kaiju("-c", str(write_config(tmp_path, services)))
    output = OutputLines(proc.stderr)
    started_lines = output.until(lambda line: "started 1 services" in line)
    proc.send_signal(signal.SIGTERM)
    err = "".join(started_lines + output.until(None))
    assert proc.wait(timeout=30) == 0 and "SIGTERM received" in err, err  # it ran until told to stop
    assert 'optional service "cache" failed to start' in err and "left out with it: api" in err
    assert "start api" not in events.read_text()


# -- systemd notify -----------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(15)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket, until: str) -> list[str]:
    got = []
    while until not in got:
        got.append(sock.recv(256).decode())
    return got


def test_systemd_ready_after_last_layer_then_stopping(tmp_path, events, notify_socket):
    sock, path = notify_socket
    cfg = write_config(tmp_path, recorder("Database", events) + recorder("Cache", events, delay=0.3))
    proc = kaiju("-c", str(cfg), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    first = receive(sock, "READY=1")
    assert first == ["READY=1"]
    assert events.read_text().splitlines()[-1] == "started cache"  # READY only after the last layer
    assert receive(sock, "WATCHDOG=1")[-1] == "WATCHDOG=1"
    proc.send_signal(signal.SIGTERM)
    assert "STOPPING=1" in receive(sock, "STOPPING=1")
    assert finish(proc)[0] == 0


def test_systemd_never_ready_after_failed_start(tmp_path, events, notify_socket):
    sock, path = notify_socket
    cfg = write_config(tmp_path, recorder("Database", events, fail=True))
    code, _ = finish(kaiju("-c", str(cfg), env={"NOTIFY_SOCKET": path}))
    assert code == 1
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        print(sock.recv(256))


# -- RPC commands ------------------------------------------------------------------------------


def test_methods_lists_the_example_methods():
    result = run("-c", "conf/example.yml", "methods")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "demo.echo(data)  [guest]  Return `data` unchanged." in lines
    assert any(line.startswith("demo.tick(source)  [system]") for line in lines)
    assert any(line.startswith("rpc.discover()") for line in lines)


def test_call_prints_the_result_as_json():
    result = run("-c", "conf/example.yml", "-e", "PORT=0", "--log-level", "ERROR", "call", "demo.hello", '{"name": "you"}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '"hello, you"'
    by_position = run("-c", "conf/example.yml", "-e", "PORT=0", "call", "demo.echo", '[{"a": [1, 2]}]')
    assert json.loads(by_position.stdout) == {"a": [1, 2]}


def test_call_takes_a_scope_a_session_and_headers():
    guest = run("-c", "conf/example.yml", "--log-level", "ERROR", "call", "demo.visits", "--scope", "guest")
    assert guest.returncode == 1 and '"MethodNotFound"' in guest.stderr  # a user method, out of a guest's reach
    basic = "Authorization: Basic " + __import__("base64").b64encode(b"demo:demo-password").decode()
    user = run("-c", "conf/example.yml", "--log-level", "ERROR", "call", "auth.whoami", "-H", basic)
    assert user.returncode == 0 and json.loads(user.stdout)["user_id"] == "demo", user.stderr
    unknown = run("-c", "conf/example.yml", "--log-level", "ERROR", "call", "auth.whoami", "--session", "nope")
    assert unknown.returncode == 0 and json.loads(unknown.stdout)["scope"] == "guest", unknown.stderr
    bad = run("-c", "conf/example.yml", "call", "auth.whoami", "-H", "no colon")
    assert bad.returncode == 2 and "expected -H 'NAME: VALUE'" in bad.stderr


def test_call_error_response_exits_1():
    result = run("-c", "conf/example.yml", "-e", "PORT=0", "--log-level", "ERROR", "call", "demo.hello", '{"nam": 1}')
    assert result.returncode == 1
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == -32602 and error["data"]["type"] == "InvalidParams"


def test_call_with_bad_params_json_exits_2():
    result = run("-c", "conf/example.yml", "call", "demo.echo", "{not json")
    assert result.returncode == 2 and "PARAMS_JSON is not JSON" in result.stderr


def test_call_without_rpc_server_in_config(tmp_path):
    cfg = tmp_path / "app.yml"
    cfg.write_text("main: {name: t}\nservices: [\"kaiju.demo:DemoService\"]\n")
    result = run("-c", str(cfg), "--log-level", "ERROR", "call", "demo.stats")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"calls": 0, "ticks": 0}


def test_failed_start_is_reported_once(tmp_path, events):
    cfg = write_config(tmp_path, recorder("Database", events, fail=True))
    _, err = finish(kaiju("-c", str(cfg), "--log-format", "plain"))
    assert err.count("db was told to fail") == 1, err


def test_call_while_the_app_runs_leaves_out_http_and_tasks():
    from kaiju.testing.redis import free_port

    port = str(free_port())
    app = kaiju("-c", "conf/example.yml", "-e", f"PORT={port}", "--log-level", "INFO")
    try:
        OutputLines(app.stderr).until(lambda line: "listening" in line, timeout=20)  # fails loudly: exit or deadline
        result = run("-c", "conf/example.yml", "-e", f"PORT={port}", "--log-level", "ERROR", "call", "demo.stats")
        assert result.returncode == 0, result.stderr  # no second bind of the app's port
        assert json.loads(result.stdout) == {"calls": 0, "ticks": 0}  # and no task ticked in the caller
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=30)


def test_call_fires_no_task_a_service_schedules_at_start(tmp_path):
    (tmp_path / "ticking.py").write_text(
        "import asyncio\nimport kaiju\nfrom kaiju import rpc\nfrom kaiju.tasks import Tasks\n"
        "class Ticker(kaiju.Service):\n    service_name = 'ticker'\n    tasks: Tasks\n    ticks = 0\n"
        "    async def start(self):\n        await self.tasks.add('tick', interval=0.01, method='ticker.tick')\n"
        "    @rpc.method\n    async def tick(self) -> None:\n        self.ticks += 1\n"
        "    @rpc.method\n    async def count(self) -> dict:\n        await asyncio.sleep(0.3)\n"
        "        task = self.tasks.task('tick')\n        return {'ticks': self.ticks, 'runs': task.runs}\n"
    )
    cfg = tmp_path / "app.yml"
    cfg.write_text("main: {name: t}\nservices: [RPCServer, Tasks, 'ticking:Ticker']\n")
    result = run("-c", str(cfg), "--log-level", "ERROR", "call", "ticker.count", env={"PYTHONPATH": f"{ROOT}:{tmp_path}"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ticks": 0, "runs": 0}  # added, listed, never fired


def test_journald_format_without_a_journal_is_a_clear_error():
    from logging_journald import JournaldLogHandler

    if JournaldLogHandler.SOCKET_PATH.exists():
        pytest.skip("this machine has a journal")
    result = run("-c", "conf/example.yml", "--log-format", "journald")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f'kaiju-run: log format "journald": no journal socket at {JournaldLogHandler.SOCKET_PATH}'


def test_call_prints_structs_uuids_datetimes_and_decimals_as_json(tmp_path):
    (tmp_path / "typed.py").write_text(
        "import datetime, decimal, uuid\nimport msgspec\nimport kaiju\nfrom kaiju import rpc\n"
        "class Item(msgspec.Struct):\n    id: uuid.UUID\n    at: datetime.datetime\n    price: decimal.Decimal\n"
        "class Shop(kaiju.Service):\n    service_name = 'shop'\n"
        "    @rpc.method\n    async def item(self) -> Item:\n"
        "        return Item(uuid.UUID(int=1), datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc),"
        " decimal.Decimal('9.90'))\n"
    )
    cfg = tmp_path / "app.yml"
    cfg.write_text("main: {name: t}\nservices: ['typed:Shop']\n")
    result = run("-c", str(cfg), "--log-level", "ERROR", "call", "shop.item", env={"PYTHONPATH": f"{ROOT}:{tmp_path}"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "id": "00000000-0000-0000-0000-000000000001", "at": "2026-01-02T03:04:00Z", "price": "9.90",
    }


def test_options_may_follow_the_command():
    result = run("check", "-c", "conf/example.yml", "-e", "PORT=1", "--log-level", "ERROR")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("example ")
    shown = run("-c", "conf/example.yml", "config", "-e", "PORT=4321")
    assert "port: 4321" in shown.stdout


def test_config_and_env_files_from_the_environment(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("GREETING=bonjour\n")
    paths = {"KAIJU_CONFIG": f"{ROOT}/conf/example.yml", "KAIJU_ENV_FILE": str(env_file)}
    result = run("--log-level", "ERROR", "call", "demo.hello", env={**paths, "PORT": "0"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "bonjour, world"
    none = run("check", env={"KAIJU_CONFIG": ""})
    assert none.returncode == 2 and "KAIJU_CONFIG" in none.stderr


def test_entrypoint_reads_kaiju_config_too(monkeypatch):
    import kaiju

    monkeypatch.setenv("KAIJU_CONFIG", f"{ROOT}/conf/example.yml")
    ep = kaiju.entrypoint(log_config=False, catch_signals=())
    assert ep.app.name == "example" and "demo" in ep.plan.specs


APP_COMMANDS = '''
import kaiju


def arguments(parser):
    parser.add_argument("name")
    parser.add_argument("--times", type=int, default=1)


@kaiju.command(arguments=arguments)
async def greet_twice(app, args):
    """Greet through the started app's demo service."""
    for _ in range(args.times):
        print(await app.services["demo"].hello(args.name))
    return 3 if args.name == "fail" else None


@kaiju.command(name="show-name", start=False)
def show(config, args):
    """Print the app's name without starting anything."""
    print(config.settings.main.name)
'''


def test_app_commands_from_the_config(tmp_path):
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    held_port = held.getsockname()[1]
    (tmp_path / "appcmds.py").write_text(APP_COMMANDS)
    cfg = tmp_path / "app.yml"
    cfg.write_text(  # the HTTP server holds a port an app already runs on: a command runs beside it
        f"main: {{name: cmdapp}}\npackages: []\ncommands: ['appcmds:greet_twice', 'appcmds:show']\n"
        f"services: [\"kaiju.demo:DemoService\", RPCServer, {{cls: HTTPServer, settings: {{port: {held_port}}}}}]\n"
    )
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    listed = run("-c", str(cfg), "--help", env=env)
    assert "greet-twice" in listed.stdout and "Greet through the started app's demo service." in listed.stdout
    assert "show-name" in listed.stdout
    greeted = run("-c", str(cfg), "--log-level", "ERROR", "greet-twice", "ann", "--times", "2", env=env)
    assert greeted.returncode == 0, greeted.stderr
    assert greeted.stdout.splitlines() == ["hello, ann", "hello, ann"]
    assert run("-c", str(cfg), "--log-level", "ERROR", "greet-twice", "fail", env=env).returncode == 3
    shown = run("show-name", "-c", str(cfg), env=env)
    assert shown.stdout.strip() == "cmdapp" and shown.returncode == 0
    held.close()


def test_app_commands_from_entry_points_and_bad_references(tmp_path):
    (tmp_path / "appcmds.py").write_text(APP_COMMANDS)
    dist = tmp_path / "appcmds-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: appcmds\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kaiju.commands]\nhello-cmd = appcmds:greet_twice\n")
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    greeted = run("-c", "conf/example.yml", "-e", "PORT=0", "--log-level", "ERROR", "hello-cmd", "bo", env=env)
    assert greeted.returncode == 0, greeted.stderr
    assert greeted.stdout.strip() == "hello, bo"
    cfg = tmp_path / "bad.yml"
    cfg.write_text("main: {name: t}\ncommands: ['appcmds:nosuch']\n")
    bad = run("-c", str(cfg), "check", env=env)
    assert bad.returncode == 2 and 'commands[0]: app command appcmds:nosuch: module "appcmds" has no attribute' in bad.stderr


def test_installed_commands_are_read_only_for_a_command_kaiju_run_does_not_have(tmp_path):
    (tmp_path / "appcmds.py").write_text(APP_COMMANDS)
    dist = tmp_path / "appcmds-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: appcmds\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kaiju.commands]\nhello-cmd = appcmds:greet_twice\nbroken = appcmds:nosuch\n")
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    checked = run("-c", "bench/startup.yml", "check", env=env)  # a built-in command: no entry point is read
    assert checked.returncode == 0, checked.stderr
    for args in (["hello-cmd", "bo"], ["--help"]):  # one it does not have, or help: all of them are read
        found = run("-c", "bench/startup.yml", *args, env=env)
        assert found.returncode == 2
        assert 'app command appcmds:nosuch: module "appcmds" has no attribute "nosuch"' in found.stderr


def test_services_of_installed_distributions_are_found_by_bare_name(tmp_path):
    (tmp_path / "plugsvc.py").write_text("import kaiju\n\n\nclass Greeter(kaiju.Service):\n    pass\n")
    dist = tmp_path / "plugsvc-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugsvc\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kaiju.services]\nGreeter = plugsvc:Greeter\n")
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    cfg = tmp_path / "app.yml"
    cfg.write_text("main: {name: t}\nservices: [RPCServer, Greeter]\n")
    found = run("-c", str(cfg), "check", env=env)
    assert found.returncode == 0, found.stderr
    assert "Greeter [plugsvc:Greeter]" in found.stdout
    cfg.write_text("main: {name: t}\nservices: [RPCServer, Greeterr]\n")
    typo = run("-c", str(cfg), "check", env=env)  # the suggestions know the installed names too
    assert typo.returncode == 2 and "did you mean Greeter" in typo.stderr, typo.stderr


def test_the_console_script_finds_the_apps_modules_from_where_it_runs(tmp_path):
    (tmp_path / "cwdapp.py").write_text("import kaiju\n\n\nclass Here(kaiju.Service):\n    pass\n")
    (tmp_path / "app.yml").write_text("main: {name: t}\npackages: [cwdapp]\nservices: [Here]\n")
    script = Path(sys.executable).with_name("kaiju-run")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(script), "-c", "app.yml", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Here" in result.stdout or "here" in result.stdout
