"""`kaiju-run hash-password`, and config checks of the auth services, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import argon2

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "kaiju", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_hash_password_prints_a_hash_of_stdin():
    result = run("hash-password", stdin="correct horse\n")
    assert result.returncode == 0, result.stderr
    made = result.stdout.strip()
    assert made.startswith("$argon2id$") and argon2.PasswordHasher().verify(made, "correct horse")
    assert "correct horse" not in result.stdout + result.stderr


def test_hash_password_refuses_an_empty_password():
    result = run("hash-password", stdin="")
    assert result.returncode == 2 and "no password" in result.stderr


def _config(tmp_path: Path, users: str, auth: str = 'secret: "0123456789abcdef0123456789abcdef"') -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        "main: {name: t}\nservices:\n  - cls: MemoryCache\n  - cls: CacheSessions\n  - cls: RPCServer\n"
        f"  - cls: ConfigUsers\n    settings:\n      users:\n{users}\n  - cls: AuthService\n    settings: {{{auth}}}\n"
    )
    return path


def test_check_accepts_the_example_config():
    result = run("-c", "conf/example.yml", "check")
    assert result.returncode == 0, result.stderr
    assert "auth [kaiju.auth.service:AuthService] <- cache, sessions, users" in result.stdout


def test_check_refuses_a_plain_password_with_its_key_path(tmp_path):
    path = _config(tmp_path, "        alice: {password_hash: hunter2}")
    result = run("-c", str(path), "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "users.alice.password_hash" in lines[0]
    assert "hunter2" not in result.stderr


def test_check_refuses_a_missing_or_short_secret(tmp_path):
    made = argon2.PasswordHasher().hash("x")
    for auth in ("", "secret: short"):
        result = run("-c", str(_config(tmp_path, f"        alice: {{password_hash: '{made}'}}", auth)), "check")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "secret" in result.stderr and "32 characters" in result.stderr


def test_config_output_masks_the_auth_secrets():
    result = run("-c", "conf/example.yml", "config")
    assert result.returncode == 0, result.stderr
    assert "$argon2" not in result.stdout and "change-this-example-secret" not in result.stdout
    assert "password_hash: '***'" in result.stdout and "secret: '***'" in result.stdout
