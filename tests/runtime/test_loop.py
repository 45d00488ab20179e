"""The event loop choice: `main.event_loop`, `KAIJU_LOOP` over it, and what the app really runs on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kaiju.config.errors import ConfigError
from kaiju.config.loader import load_config
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.loop import LOOP_ENV, LoopUnavailable, choose_loop, config_loop, loop_factory, loop_name
from tests.runtime.test_cli import run, write_config

if sys.platform == "linux":
    import uvloop  # a dependency here: a broken install fails these tests, it never skips them
else:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux only")

ROOT = Path(__file__).resolve().parents[2]


def test_the_setting_decides_without_the_variable() -> None:
    assert choose_loop("asyncio", environ={}) == "asyncio"
    assert choose_loop("uvloop", environ={}) == "uvloop"
    assert choose_loop(environ={}) == "auto"


def test_the_variable_wins_over_the_setting() -> None:
    assert choose_loop("uvloop", environ={LOOP_ENV: "asyncio"}) == "asyncio"
    assert choose_loop("asyncio", environ={LOOP_ENV: "UVLOOP"}) == "uvloop"
    assert choose_loop("asyncio", environ={LOOP_ENV: ""}) == "asyncio"  # set but empty: not set


def test_an_unknown_loop_names_where_it_was_asked() -> None:
    with pytest.raises(LoopUnavailable, match=r'^KAIJU_LOOP: expected one of auto, uvloop, asyncio, got "tokio"$'):
        choose_loop("auto", environ={LOOP_ENV: "tokio"})


def test_loop_name_tells_the_implementations_apart() -> None:
    plain = asyncio.SelectorEventLoop()
    fast = uvloop.new_event_loop()
    try:
        assert (loop_name(plain), loop_name(fast)) == ("asyncio", "uvloop")
    finally:
        plain.close()
        fast.close()


def test_the_asyncio_choice_ignores_a_global_uvloop_policy() -> None:
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        loop = loop_factory("asyncio")()
    finally:
        asyncio.set_event_loop_policy(policy)
    try:
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()


def config(choice: str) -> dict:
    return {"main": {"name": "t", "event_loop": choice}, "services": []}


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_app_runs_on_the_loop_the_config_names(choice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    seen: list[str] = []

    def start() -> None:  # its own thread: the test's loop is already running in this one
        ep = Entrypoint(config=config(choice), catch_signals=(), log_config=False, os_env=False)
        with ep as loop:
            seen.append(loop_name(loop))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(30)
    assert seen == [choice]


def test_the_variable_overrides_the_config_for_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    seen: list[str] = []

    def start() -> None:
        with Entrypoint(config=config("uvloop"), catch_signals=(), log_config=False, os_env=False) as loop:
            seen.append(loop_name(loop))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(30)
    assert seen == ["asyncio"]


def test_an_unknown_variable_is_a_config_error_naming_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "tokio")
    loaded = load_config([config("auto")], os_env=False)
    with pytest.raises(ConfigError, match=r'^environment: KAIJU_LOOP: expected one of auto, uvloop, asyncio, got "tokio"$'):
        config_loop(loaded)


def test_a_bad_setting_fails_check_and_run_alike(tmp_path) -> None:
    path = write_config(tmp_path, "  []\n", main="  event_loop: tokio\n")
    for command in ("check", "run"):
        proc = run("-c", str(path), command)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "main.event_loop" in proc.stderr and "Traceback" not in proc.stderr, (command, proc.stderr)


def test_check_refuses_an_unknown_variable(tmp_path) -> None:
    path = write_config(tmp_path, "  []\n")
    proc = run("-c", str(path), "check", env={LOOP_ENV: "tokio"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'kaiju-run: environment: KAIJU_LOOP: expected one of auto, uvloop, asyncio, got "tokio"'


GAP = """
import os, signal, sys
import kaiju
config = {"main": {"name": "gap", "event_loop": sys.argv[1]}, "services": []}
with kaiju.entrypoint(config=config, log_config=False) as loop:
    os.kill(os.getpid(), signal.SIGTERM)  # arrives before the loop runs again
    loop.run_forever()
print("stopped", flush=True)
"""


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_a_signal_between_start_and_run_forever_stops_the_app(choice: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != LOOP_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", GAP, choice], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=30,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "stopped"), proc.stderr
    assert proc.stderr.count("SIGTERM received, shutting down") == 1, proc.stderr
