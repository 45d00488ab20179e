"""The config's `logging:` section, through a real `kaiju-run` process: formats, handlers,
per-logger levels, request logs, and `kaiju-run check` rejecting a bad section."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (?P<level>[A-Z]+) (?P<logger>\S+) \[(?P<cid>[^\]]+)\] (?P<rest>.*)$")


def kaiju_run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "kaiju", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def write_config(tmp_path: Path, logging_section: str, rpc_settings: str = "{}") -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        "main: {name: logged, loglevel: DEBUG}\n"
        f"logging:\n{logging_section}\n"
        "services:\n"
        f"  - cls: RPCServer\n    settings: {rpc_settings}\n"
        "  - cls: kaiju.demo:DemoService\n"
    )
    return path


def test_plain_lines_in_a_file_carry_time_level_logger_and_correlation_id(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    config = write_config(
        tmp_path,
        f"  format: json\n  handlers:\n    - {{type: file, path: '{log_file}', format: plain}}\n    - {{type: stderr, level: WARNING}}",
        "{request_logs: true, response_logs: true}",
    )
    result = kaiju_run("-c", str(config), "call", "demo.echo", '{"data": {"user": "ann", "password": "hunter2"}}')
    assert result.returncode == 0, result.stderr
    lines = [PLAIN.match(line) for line in log_file.read_text().splitlines() if line and not line.startswith(" ")]
    assert all(lines), log_file.read_text()
    ready = next(m for m in lines if m["rest"].startswith("demo service ready"))
    assert (ready["level"], ready["logger"], ready["cid"]) == ("INFO", "logged.demo", "-")
    (request,) = [m for m in lines if m["rest"].startswith("RPC request")]
    assert request["cid"] != "-" and request["logger"] == "logged.rpc"
    assert "method='demo.echo'" in request["rest"] and "outcome='ok'" in request["rest"] and "duration_ms=" in request["rest"]
    assert "'password': '***'" in request["rest"] and "hunter2" not in log_file.read_text()  # params and result, masked
    # the stderr handler passes WARNING and up only, in the section's format (json)
    assert "demo service ready" not in result.stderr and "RPC request" not in result.stderr


def test_per_logger_levels_and_json_on_stderr(tmp_path: Path) -> None:
    config = write_config(tmp_path, "  format: json\n  loggers: {logged.demo: WARNING, aiohttp.access: ERROR}", "{request_logs: true}")
    result = kaiju_run("-c", str(config), "call", "demo.hello", '{"name": "x"}')
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records and not [r for r in records if r["logger"] == "logged.demo"]  # INFO lines held back
    (request,) = [r for r in records if r["message"] == "RPC request"]
    assert request["method"] == "demo.hello" and request["outcome"] == "ok" and request["correlation_id"]
    assert request["params"] == {"name": "x"} and "result" not in request  # request_logs only


def test_request_logs_are_off_by_default(tmp_path: Path) -> None:
    config = write_config(tmp_path, "  format: json")
    result = kaiju_run("-c", str(config), "call", "demo.hello")
    assert result.returncode == 0, result.stderr
    assert "RPC request" not in result.stderr


def test_check_rejects_a_bad_logging_section_with_its_key_path(tmp_path: Path) -> None:
    cases = {
        "  format: xml": 'logging.format: expected one of plain, color, json, journald, got "xml"',
        "  handlers:\n    - {type: file}": "logging.handlers[0]: a file handler needs a path",
        "  loggers: {aiohttp.access: LOUD}": 'logging.loggers["aiohttp.access"]: expected one of DEBUG',
        f"  handlers:\n    - {{type: file, path: '{tmp_path}/missing/app.log'}}": "logging.handlers[0].path: no directory",
        "  handlers:\n    - {type: stderr, format: journald}": "logging.handlers[0].format: journald is a handler type",
    }
    for section, message in cases.items():
        config = write_config(tmp_path, section)
        result = kaiju_run("-c", str(config), "check")
        assert result.returncode == 2, (section, result.stdout, result.stderr)
        assert result.stderr.startswith(f"kaiju-run: {config}: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_file_handler_rotates(tmp_path: Path) -> None:
    import logging

    from kaiju.config.settings import LoggingSettings, LogHandlerSettings
    from kaiju.logging import configure

    log_file = tmp_path / "rotated.log"
    section = LoggingSettings(handlers=[LogHandlerSettings(type="file", path=str(log_file), max_bytes=200, backups=2)])
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", "plain", settings=section)
        for n in range(20):
            logging.getLogger("rotation").info("line %d of some length to fill the file", n)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert sorted(p.name for p in tmp_path.glob("rotated.log*")) == ["rotated.log", "rotated.log.1", "rotated.log.2"]
    assert "line 19" in log_file.read_text()


def test_refused_params_are_logged_masked(tmp_path: Path) -> None:
    config = write_config(tmp_path, "  format: json", "{request_logs: true}")
    result = kaiju_run("-c", str(config), "call", "demo.hello", '{"name": 1, "token": "abc123"}')
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (request,) = [r for r in records if r.get("message") == "RPC request"]
    assert request["outcome"] == "InvalidParams" and request["duration_ms"] is None
    assert request["params"] == {"name": 1, "token": "***"} and "abc123" not in result.stderr
