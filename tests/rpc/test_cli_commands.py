"""`kaiju-run methods` and `kaiju-run call` as real processes, against the RPC package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        "main:\n  name: t\n  loglevel: WARNING\n"
        "packages: [tests.rpc.conftest]\n"
        "services:\n  - cls: Calc\n  - cls: RPCServer\n"
    )
    return path


def kaiju(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "kaiju", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_methods_lists_names_params_and_permissions(tmp_path):
    out = kaiju("-c", str(write_config(tmp_path)), "methods")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("calc.subtract(minuend, subtrahend)  [guest]") for line in lines)
    assert any(line.startswith("calc.system_only()  [system]") for line in lines)
    assert any(line.startswith("rpc.discover()") for line in lines)


def test_call_prints_result_as_json(tmp_path):
    out = kaiju("-c", str(write_config(tmp_path)), "call", "calc.sum", '{"a": 1, "b": 2}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == 3


def test_call_with_system_scope_and_error_exit(tmp_path):
    config = str(write_config(tmp_path))
    assert json.loads(kaiju("-c", config, "call", "calc.system_only").stdout) == "system"
    out = kaiju("-c", config, "call", "calc.subtract", '{"minuend": "x"}')
    assert out.returncode == 1 and json.loads(out.stderr)["error"]["data"]["type"] == "InvalidParams"
