"""Start-up imports: `kaiju-run check` on the example config loads only what building the app needs.

Token signing (PyJWT, cryptography), password hashing (argon2), the Redis client and OpenTelemetry wait for
the first use or for `start()`; each probe runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFERRED = ("jwt", "cryptography", "argon2", "redis", "opentelemetry")


def modules_after_check(config: str) -> set[str]:
    probe = (
        "import contextlib, io, json, sys\n"
        "from kaiju.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['-c', {config!r}, 'check'])\n"
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    code, modules = json.loads(out.stdout)
    assert code == 0, out.stderr
    return set(modules)


def test_check_of_the_example_defers_what_only_a_running_app_needs() -> None:
    modules = modules_after_check("conf/example.yml")
    assert "kaiju.auth.service" in modules  # the config names AuthService: its module was checked
    assert sorted(m for m in modules if m.split(".")[0] in DEFERRED) == []


def test_signing_a_token_loads_pyjwt_on_first_use() -> None:
    probe = (
        "import sys\n"
        "from kaiju.auth.tokens import TokenSigner\n"
        "signer = TokenSigner(secret='x' * 32)\n"
        "before = 'jwt' in sys.modules\n"
        "token, _ = signer.issue('access', 'demo', 'f', 60)\n"
        "print(before, signer.check(token, 'access')['sub'])"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "demo"]
