"""A separate project that only installs kaiju tests its app with kaiju's pytest plugin:
tests/example_project, installed into a fresh virtualenv, runs its own tests there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "example_project"


def test_an_app_outside_kaiju_is_tested_with_the_plugin_alone(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([*pip, f"{ROOT}[testing]"], check=True, env=env, timeout=600)
    project = tmp_path / "shop"
    shutil.copytree(PROJECT, project)
    subprocess.run([*pip, str(project)], check=True, env=env, timeout=600)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout[-2000:]
