"""Start-up imports: `kaiju-run check` on the example config loads only what building the app needs,
and a start loads nothing for a feature its config does not use.

Token signing (PyJWT, cryptography), password hashing (argon2), the Redis client and OpenTelemetry wait for
the first use or for `start()`; suggestions for mistakes (difflib), the API explorer page and the
client commands wait for the error, the request or the command that needs them. Each probe runs
in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFERRED = ("jwt", "cryptography", "argon2", "redis", "opentelemetry")
# what a start of bench/startup.yml (RPC over HTTP and one service) never needs
NOT_AT_START = (
    *DEFERRED,
    "difflib",
    "croniter",
    "kaiju.auth",
    "kaiju.cache",
    "kaiju.clients",
    "kaiju.http.explorer",
    "kaiju.streams",
    "kaiju.tasks",
)

# starts the app in this process, takes sys.modules when systemd's READY=1 (sent once every
# service started) arrives on NOTIFY_SOCKET, then stops the app with a real SIGTERM
START_PROBE = """
import json, os, signal, socket, sys, threading
from kaiju.cli import main

config, path = sys.argv[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.environ["NOTIFY_SOCKET"] = path

def on_ready():
    while sock.recv(64) != b"READY=1":
        pass
    print(json.dumps(sorted(sys.modules.copy())), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=on_ready, daemon=True).start()
sys.exit(main(["-c", config, "-e", "PORT=0", "--log-level", "WARNING"]))
"""


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


def modules_after_start(config: str, tmp_path: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", START_PROBE, config, str(tmp_path / "notify.sock")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def _under(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == root or m.startswith(root + ".") for root in roots))


def test_a_start_imports_nothing_for_what_its_config_does_not_use(tmp_path) -> None:
    modules = modules_after_start("bench/startup.yml", tmp_path)
    assert {"kaiju.http.server", "kaiju.rpc.server", "kaiju.demo"} <= modules  # the probe saw a started app
    assert _under(modules, NOT_AT_START) == []


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
