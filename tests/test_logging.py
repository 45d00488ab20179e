import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from kaiju.logging import ContextFilter, JSONFormatter, KaijuLogger, log_field_providers
from kaiju.runtime.service import Service
from kaiju.testing import OutputLines

ROOT = Path(__file__).resolve().parents[1]


def make_record(logger_name="app.db", msg="saved %s", args=("x",), **extra):
    record = logging.LogRecord(logger_name, logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_time_level_logger_message_and_extras():
    line = json.loads(JSONFormatter().format(make_record(user_id=1, correlation_id="abc")))
    assert line["level"] == "info" and line["logger"] == "app.db" and line["message"] == "saved x"
    assert line["user_id"] == 1 and line["correlation_id"] == "abc"
    assert line["time"].endswith("+00:00")
    assert "args" not in line and "lineno" not in line


def test_json_line_carries_exception_and_unencodable_values():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("a", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    record.obj = object()
    line = json.loads(JSONFormatter().format(record))
    assert "ValueError: boom" in line["exception"] and line["obj"].startswith("<object")


def test_logger_keyword_extras_and_caller(caplog):
    logger = KaijuLogger(logging.getLogger("kaiju-test"))
    with caplog.at_level(logging.INFO, logger="kaiju-test"):
        logger.info("saved", user_id=1, exc_info=False)
    record = caplog.records[-1]
    assert record.user_id == 1 and record.filename == "test_logging.py"


def test_context_filter_stamps_provider_fields():
    record = make_record()
    ContextFilter([lambda: {"correlation_id": "c1"}, lambda: None]).filter(record)
    assert record.correlation_id == "c1"


def test_services_offer_log_field_providers():
    def request_id():
        return {"request_id": "r1"}

    class Offers(Service):
        def log_fields(self):
            return request_id

    assert Service().log_fields() is None  # the contract's default: no provider
    offers = [s.log_fields() for s in (Offers(), Service(), Offers())]
    assert log_field_providers(offers) == [request_id]


def test_the_rpc_server_offers_the_correlation_id():
    from kaiju.rpc.context import log_fields
    from kaiju.rpc.server import RPCServer

    assert log_field_providers([RPCServer().log_fields()]) == [log_fields]


def test_the_runtime_imports_nothing_of_rpc():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, kaiju.runtime.entrypoint; print(sorted(m for m in sys.modules if 'rpc' in m))"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_kaiju_run_writes_json_lines(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # PORT=0: any free port, so a running example app on 8080 does not matter
        [sys.executable, "-m", "kaiju", "-c", "conf/example.yml", "-e", "PORT=0", "--log-format", "json", "--no-os-env"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        output = OutputLines(proc.stderr)
        lines = [json.loads(x) for x in output.until(lambda line: "started" in json.loads(line)["message"])]
        proc.send_signal(signal.SIGTERM)
        lines += [json.loads(x) for x in output.until(None) if x.strip()]
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait(timeout=30)
    ready = next(x for x in lines if x["message"] == "demo service ready")
    assert ready["logger"] == "example.demo" and ready["greeting"] == "hello" and ready["level"] == "info"
    assert any(x["message"] == "SIGTERM received, shutting down" for x in lines)


def test_log_lines_inside_a_request_carry_its_correlation_id():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", "conf/example.yml", "-e", "PORT=0", "--log-format", "json",
         "--log-level", "DEBUG", "call", "demo.tick", '{"source": "cli"}'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    ticks = {x["source"]: x for x in lines if x["message"] == "tick"}  # the example's tasks tick too
    assert ticks["cli"]["correlation_id"]
    started = next(x for x in lines if "started" in x["message"])
    assert "correlation_id" not in started  # outside any request


def test_text_formats_append_extras():
    from kaiju.logging import ExtrasFormatter

    formatter = ExtrasFormatter(logging.Formatter("%(levelname)s %(message)s"))
    assert formatter.format(make_record(url="http://x", n=2)) == "INFO saved x url='http://x' n=2"
    assert formatter.format(make_record()) == "INFO saved x"


def test_every_record_is_masked_like_the_config():
    from kaiju.logging import MaskingFilter, PlainFormatter

    try:
        raise ConnectionError("cannot connect to postgres://app:s3cr3t@db:5432/shop")
    except ConnectionError:
        record = logging.LogRecord("app.db", logging.ERROR, __file__, 1, "method failed: %s", ("password=hunter2",), sys.exc_info())
    record.dsn = "redis://:r3d1s@cache:6379/0"
    assert MaskingFilter().filter(record)
    for formatter in (PlainFormatter(), JSONFormatter()):
        text = formatter.format(record)
        assert "s3cr3t" not in text and "hunter2" not in text and "r3d1s" not in text, text
        assert "postgres://app:***@db:5432/shop" in text and "password=***" in text and "ConnectionError" in text


def test_a_method_error_reaches_the_log_masked(tmp_path):
    """A real `kaiju-run call` whose method raises with a DSN in its message: the log line says `***`."""
    app = tmp_path / "leaky.py"
    app.write_text(
        "from kaiju import rpc\nfrom kaiju.runtime.service import Service\n\n"
        "class Leaky(Service):\n    service_name = 'leaky'\n\n"
        "    @rpc.method\n    async def fail(self) -> None:\n"
        "        raise RuntimeError('cannot connect to postgres://app:s3cr3t@db/x')\n"
    )
    cfg = tmp_path / "app.yml"
    cfg.write_text("main: {name: t}\npackages: [leaky]\nservices:\n  - cls: RPCServer\n  - cls: Leaky\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    proc = subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", str(cfg), "--log-format", "json", "call", "leaky.fail"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "s3cr3t" not in proc.stderr + proc.stdout and "postgres://app:***@db/x" in proc.stderr, proc.stderr
