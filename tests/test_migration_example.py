"""docs/migration.rst's kaiju app, taken from the page as it is written, checked and run as a
user would: `kaiju-run check`, a call, the app's own command, and the HTTP view."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "migration.rst"


def example_files() -> dict[str, str]:
    """The code blocks of the page whose first line names a file of the kaiju app
    (`# app/services.py (kaiju)`, `# settings/config.yml`), by path."""
    files = {}
    blocks = re.findall(r"\.\. code-block:: (?:python|yaml)\n\n((?:    .*\n|\n)+)", PAGE.read_text())
    for block in blocks:
        text = "\n".join(line[4:] for line in block.splitlines()).strip() + "\n"
        first = text.splitlines()[0]
        named = re.fullmatch(r"# (\S+)( \(kaiju\))?", first)
        if named and (named.group(2) or first.startswith("# settings/")):
            files[named.group(1)] = text
    return files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    files = example_files()
    assert {"app/warehouse.py", "app/services.py", "settings/config.yml"} <= files.keys(), files.keys()
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "app" / "__init__.py").write_text("")
    # kaiju-tools' env file, as the app had it
    (tmp_path / "settings" / "env.json").write_text(json.dumps({"main_env": "prod", "run_port": 0}))
    return tmp_path


def kaiju_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{project}"}
    return subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", "settings/config.yml", "-f", "settings/env.json", "--log-level", "WARNING", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_migration_example_passes_check(project):
    result = kaiju_run(project, "check")
    assert result.returncode == 0, result.stderr
    assert "shop 0.0.0 (env prod)" in result.stdout  # main_env from the kaiju-tools env file
    assert "warehouse [app.warehouse:Warehouse]" in result.stdout and "stock [app.services:Stock]" in result.stdout


def test_the_migration_example_answers_a_call_and_runs_its_command(project):
    result = kaiju_run(project, "call", "stock.count", '{"item": "cup"}')
    assert result.returncode == 0 and json.loads(result.stdout) == 3, result.stderr
    result = kaiju_run(project, "recount")
    assert result.returncode == 0, result.stderr
