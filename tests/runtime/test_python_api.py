"""`kaiju.entrypoint` / `kaiju.run` from Python, in a real process, and import hygiene."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_import_changes_nothing():
    proc = python("""
        import logging, sys
        before = (logging.getLoggerClass(), list(logging.getLogger().handlers), logging.getLogger().level)
        import kaiju
        after = (logging.getLoggerClass(), list(logging.getLogger().handlers), logging.getLogger().level)
        assert before == after, (before, after)
        loaded = sorted(m for m in sys.modules if m.startswith(("kaiju", "aiomisc", "aiohttp", "redis")))
        print(loaded)
    """)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "['kaiju']"


def test_entrypoint_with_config_and_instances_runs_until_signal(tmp_path):
    events = tmp_path / "events"
    proc = python(f"""
        import kaiju
        from tests.runtime.sample_services import Database
        config = {{"main": {{"name": "py"}}, "packages": ["tests.runtime.sample_services"],
                   "services": [{{"cls": "Cache", "settings": {{"events": {str(events)!r}}}}}]}}
        with kaiju.entrypoint(Database(events={str(events)!r}), config=config, log_config=False) as loop:
            print("ready", type(loop).__name__, flush=True)
            loop.run_forever()
        print("stopped", flush=True)
    """)
    assert proc.stdout.readline().split()[0] == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "stopped"
    assert events.read_text().splitlines() == ["start db", "started db", "start cache", "started cache", "stop cache", "stop db"]


def test_run_until_signal(tmp_path):
    events = tmp_path / "events"
    proc = python(f"""
        import kaiju
        from tests.runtime.sample_services import Database
        kaiju.run(Database(events={str(events)!r}), log_config=False)
        print("returned", flush=True)
    """)
    import time

    deadline = time.monotonic() + 20
    while not (events.exists() and "started db" in events.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "returned" and events.read_text().splitlines()[-1] == "stop db"


def test_aiomisc_helpers_work_inside_services():
    proc = python("""
        import threading
        import aiomisc
        import kaiju

        @aiomisc.threaded
        def thread_name():
            return threading.current_thread().name

        class Probe(kaiju.Service):
            async def start(self):
                self.thread = await thread_name()  # aiomisc's thread pool, set up by its entrypoint
                self.current = aiomisc.Entrypoint.get_current()

        probe = Probe(name="probe")
        with kaiju.entrypoint(probe, log_config=False, catch_signals=()) as loop:
            print(probe.thread != threading.current_thread().name, type(probe.current).__name__, probe.loop is loop)
    """)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == ["True", "Entrypoint", "True"]
