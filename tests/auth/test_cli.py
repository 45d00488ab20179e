"""`kaiju-run hash-password`, and config checks of the auth services, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import argon2
import pytest

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


def _config(tmp_path: Path, users: str, auth: str = 'secret: "0123456789abcdef0123456789abcdef"', env: str = "dev") -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        f"main: {{name: t, env: {env}}}\nservices:\n  - cls: MemoryCache\n  - cls: CacheSessions\n  - cls: RPCServer\n"
        f"  - cls: ConfigUsers\n    settings:\n      users:\n{users}\n  - cls: AuthService\n    settings: {{{auth}}}\n"
    )
    return path


def test_check_accepts_the_example_config():
    result = run("-c", "conf/example.yml", "check")
    assert result.returncode == 0, result.stderr
    assert "auth [kaiju.auth.service:AuthService] <- cache, events, sessions, users" in result.stdout


def test_check_refuses_a_plain_password_with_its_key_path(tmp_path):
    path = _config(tmp_path, "        alice: {password_hash: hunter2}")
    result = run("-c", str(path), "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "users.alice.password_hash" in lines[0]
    assert "hunter2" not in result.stderr


def test_check_refuses_a_short_secret_in_any_env(tmp_path):
    made = argon2.PasswordHasher().hash("x")
    for env in ("dev", "prod"):
        result = run("-c", str(_config(tmp_path, f"        alice: {{password_hash: '{made}'}}", "secret: short", env)), "check")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "services[AuthService].settings.secret" in result.stderr and "32 characters" in result.stderr


@pytest.mark.parametrize("auth, key, why", [
    ("", "secret", "got none"),
    ('secret: ""', "secret", "got none"),
    ('secret: "change-this-example-secret-to-32-chars-or-more"', "secret", "published example secret"),
    ('secret: "abababababababababababababababab"', "secret", "fewer than 8 different characters"),
    ("secret_file: /nonexistent/auth_secret", "secret_file", "readable file"),
])
def test_check_refuses_a_missing_published_or_weak_secret_outside_dev(tmp_path, auth, key, why):
    made = argon2.PasswordHasher().hash("x")
    result = run("-c", str(_config(tmp_path, f"        alice: {{password_hash: '{made}'}}", auth, "prod")), "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"services[AuthService].settings.{key}" in lines[0] and why in lines[0], lines


def test_dev_makes_up_a_missing_secret_and_a_file_can_hold_it(tmp_path):
    made = argon2.PasswordHasher().hash("x")
    result = run("-c", str(_config(tmp_path, f"        alice: {{password_hash: '{made}'}}", "")), "check")
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "auth_secret"
    secret.write_text("s3cr3t-from-a-credentials-file-0123456789\n")
    result = run("-c", str(_config(tmp_path, f"        alice: {{password_hash: '{made}'}}", f"secret_file: {secret}", "prod")), "check")
    assert result.returncode == 0, result.stderr


def test_the_example_refuses_to_run_outside_dev_without_a_secret():
    result = run("-c", "conf/example.yml", "-e", "ENV=prod", "check")
    assert result.returncode == 2 and "services[AuthService].settings.secret" in result.stderr, result.stderr
    result = run("-c", "conf/example.yml", "-e", "ENV=prod", "-e", "AUTH_SECRET=change-this-example-secret-to-32-chars-or-more", "check")
    assert result.returncode == 2 and "published example secret" in result.stderr, result.stderr


def test_config_output_masks_the_auth_secrets():
    result = run("-c", "conf/example.yml", "config")
    assert result.returncode == 0, result.stderr
    assert "$argon2" not in result.stdout and "change-this-example-secret" not in result.stdout
    assert "password_hash: '***'" in result.stdout and "secret: '***'" in result.stdout
