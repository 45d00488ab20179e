"""One trace across two real `kaiju-run` processes, exported to a real OTLP/HTTP receiver.

HTTP -> `front.order` -> nested `front.verify`, then a stream message on Redis -> the
listener in the `back` process -> `back.ship` -> nested `back.store`; and a task run in
`back`. The request comes with a `traceparent`: every span continues it, parented as the
chain goes, and the log lines of both processes carry its trace id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from kaiju.testing import OutputLines, eventually, free_port
from tests.telemetry.receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parents[2]
TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = "b7ad6b7169203331"

COMMON = """\
packages: [tests.telemetry.trace_app]
services:
  - cls: Telemetry
    settings: {{endpoint: "{endpoint}", export_interval: 0.1}}
  - cls: RedisConnection
    settings: {{url: "{redis_url}"}}
  - cls: RedisStream
  - cls: RPCServer
"""
FRONT = (
    """\
main: {{name: front, env: test}}
"""
    + COMMON
    + """\
  - cls: StreamProducer
  - cls: HTTPServer
    settings: {{port: {port}}}
  - cls: Front
"""
)
BACK = (
    """\
main: {{name: back, env: test}}
"""
    + COMMON
    + """\
  - cls: Streams
  - cls: StreamListener
    settings: {{block_ms: 100}}
  - cls: Back
  - cls: PeriodicTask
    name: restock
    settings: {{interval: 3600, delay: 0.2, method: back.store, params: {{n: 1}}}}
"""
)


def start(config: Path) -> tuple[subprocess.Popen, OutputLines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaiju", "-c", str(config), "--log-format", "json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = OutputLines(proc.stderr)
    lines.until(lambda line: '"message":"listening"' in line.replace(" ", ""), timeout=60)
    return proc, lines


def stop(proc: subprocess.Popen, lines: OutputLines) -> list[dict]:
    """SIGTERM, and the JSON log lines written until the process ended."""
    proc.send_signal(signal.SIGTERM)
    rest = lines.until(None, timeout=60)
    assert proc.wait(timeout=30) == 0
    return [json.loads(line) for line in rest if line.startswith("{")]


@pytest.mark.redis
@pytest.mark.slow
async def test_one_request_is_one_trace_across_two_processes(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    async with OTLPReceiver() as receiver:
        settings = {"endpoint": receiver.url, "redis_url": redis_url, "port": port}
        (tmp_path / "front.yml").write_text(FRONT.format(**settings))
        (tmp_path / "back.yml").write_text(BACK.format(**settings))
        back, back_lines = start(tmp_path / "back.yml")
        front, front_lines = start(tmp_path / "front.yml")
        try:
            body = {"jsonrpc": "2.0", "id": 1, "method": "front.order", "params": {"n": 5}}
            headers = {"traceparent": f"00-{TRACE}-{CALLER}-01"}
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/public/rpc", json=body, headers=headers) as response:
                    assert "result" in await response.json()
            wanted = {"front.order", "front.verify", "send rpc", "process rpc", "back.ship", "back.store"}
            await eventually(lambda: wanted <= set(receiver.trace(TRACE)), timeout=30, what="the trace exported")
            await eventually(
                lambda: [s for s in receiver.spans if s.name == "restock"], timeout=30, what="the task run"
            )
        finally:
            front_logs, back_logs = stop(front, front_lines), stop(back, back_lines)
    spans = receiver.trace(TRACE)
    chain = [
        ("POST /public/rpc", CALLER, "front"),
        ("front.order", "POST /public/rpc", "front"),
        ("front.verify", "front.order", "front"),
        ("send rpc", "front.order", "front"),
        ("process rpc", "send rpc", "back"),
        ("back.ship", "process rpc", "back"),
        ("back.store", "back.ship", "back"),
    ]
    for name, parent, service in chain:
        expected = spans[parent].span_id if parent in spans else parent
        assert (spans[name].parent_id, spans[name].service) == (expected, service), name
    assert spans["process rpc"].attributes["messaging.system"] == "redis"
    assert spans["process rpc"].attributes["kaiju.stream.outcome"] == "acked"
    assert spans["back.ship"].resource["deployment.environment"] == "test"
    # the task run: a trace of its own, its call a child
    (run,) = [s for s in receiver.spans if s.name == "restock"]
    call = next(s for s in receiver.spans if s.trace_id == run.trace_id and s.name == "back.store")
    assert run.parent_id == "" and call.parent_id == run.span_id and run.attributes["kaiju.task.outcome"] == "ok"
    # the log lines of both processes carry the trace id, and the correlation id with it
    taken = next(line for line in front_logs if line["message"] == "order taken")
    shipping = next(line for line in back_logs if line["message"] == "shipping")
    assert taken["trace_id"] == shipping["trace_id"] == TRACE
    assert taken["span_id"] == spans["front.order"].span_id and shipping["span_id"] == spans["back.ship"].span_id
    assert taken["correlation_id"] == spans["front.order"].attributes["kaiju.correlation_id"]
