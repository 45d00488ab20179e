"""Deployment: the systemd template unit as shipped, and several processes on one port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from kaiju.testing import OutputLines, free_port

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "conf" / "kaiju@.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def install_root(tmp_path: Path) -> Path:
    """A file-system root laid out as docs/deployment.rst says: the system's own units, the
    template in /etc/systemd/system, kaiju-run in /opt/kaiju/venv (a stand-in script)."""
    root = tmp_path / "root"
    system_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
    if system_units is None:
        pytest.skip("no systemd units on this machine")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    kaiju_run = root / "opt/kaiju/venv/bin/kaiju-run"
    kaiju_run.parent.mkdir(parents=True)
    kaiju_run.write_text("#!/bin/sh\n")
    kaiju_run.chmod(0o755)
    return root


@needs_systemd_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root = install_root(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", f"--root={root}", "kaiju@shop.service"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd_analyze
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    unit = tmp_path / "kaiju@shop.service"
    shutil.copy(UNIT, unit)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip("this systemd-analyze cannot review unit files offline")
    line = next(x for x in result.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":", 1)[1].split()[0])
    assert score <= 3.0, result.stdout


def test_the_unit_names_what_the_deployment_relies_on() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "LimitNOFILE=", "RestartPreventExitStatus=2"):
        assert line in text, line


def test_the_example_unit_takes_its_signing_key_from_a_credential_file() -> None:
    # never from the unit or the config: a file only root and the process can read
    text = (ROOT / "conf" / "kaiju-example.service").read_text()
    for line in ("LoadCredential=auth_secret:", "AUTH_SECRET_FILE=%d/auth_secret", "ENV=prod"):
        assert line in text, line
    assert "AUTH_SECRET=" not in text


def test_three_processes_share_one_port_with_reuse_port(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "shared.yml"
    config.write_text(
        "main: {name: shared}\n"
        "services:\n"
        "  - cls: RPCServer\n"
        f"  - cls: HTTPServer\n    settings: {{port: {port}, reuse_port: true}}\n"
        "  - cls: kaiju.demo:DemoService\n    settings: {greeting: '[GREETING]'}\n"
    )
    # as the unit runs them: the config from KAIJU_CONFIG, the values from the environment
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIJU_CONFIG": str(config)}
    names = ("first", "second", "third")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kaiju", "--log-format", "json"],
            env={**env, "GREETING": name},
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )
        for name in names
    ]
    outputs = [OutputLines(proc.stderr) for proc in procs]
    try:
        for output in outputs:  # each has started (its start-up line), so each is listening
            output.until(lambda line: line.startswith("{") and "started" in json.loads(line)["message"], timeout=60)
        answered: set[str] = set()
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "demo.hello", "params": {"name": "you"}}).encode()
        for _ in range(500):  # a new connection each time: the kernel spreads them over the three
            request = urllib.request.Request(f"http://127.0.0.1:{port}/public/rpc", data=body, headers={"Connection": "close", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answered.add(json.loads(response.read())["result"].split(",")[0])
            if len(answered) == len(names):
                break
        assert answered == set(names)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in procs]
    assert codes == [0, 0, 0]
