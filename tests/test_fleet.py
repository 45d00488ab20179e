"""`kaiju-run tasks ...` and `kaiju-run streams ...` against real `kaiju-run` processes sharing
one Redis: a task paused from the shell is paused in both processes; a cron fire missed while
both were down runs once with `misfire: once`; a dead letter replayed twice at once runs once.
Each test has an app name of its own, so tests sharing the server see none of each other's keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import redis
from croniter import croniter

from kaiju.redis import RedisConnection
from kaiju.runtime.service import App
from kaiju.tasks.records import RedisRecords, RunRecord
from kaiju.testing import OutputLines
from kaiju.testing.services import started

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, name: str, url: str, services: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(
        f"main: {{name: {name}, env: test, shutdown_timeout: 5}}\n"
        "services:\n"
        f"  - cls: RedisConnection\n    settings: {{url: '{url}'}}\n"
        "  - cls: RPCServer\n"
        "  - cls: Tasks\n    settings: {control_interval: 0.05}\n" + services
    )
    return path


def kaiju(config: Path, *args: str, url: str, done: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLEET_REDIS": url, "FLEET_DONE": done}
    return subprocess.Popen(
        [sys.executable, "-m", "kaiju", "-c", str(config), "--log-format", "plain", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(config: Path, *args: str, url: str, done: str) -> subprocess.CompletedProcess:
    proc = kaiju(config, *args, url=url, done=done)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.02)


def test_a_task_paused_from_the_shell_is_paused_in_every_process(tmp_path, redis_url):
    name, done = f"fleet{uuid.uuid4().hex[:8]}", f"done.{uuid.uuid4().hex}"
    config = write_config(
        tmp_path,
        name,
        redis_url,
        "  - cls: PeriodicTask\n    name: tick\n"
        "    settings: {interval: 3600, delay: 3600, call: 'tests.fleet_app:mark', params: {name: tick}}\n",
    )
    procs = [kaiju(config, url=redis_url, done=done) for _ in range(2)]
    try:
        lines = [OutputLines(p.stderr) for p in procs]
        for out in lines:
            out.until(lambda line: "task tick scheduled" in line)
        run(config, "tasks", "pause", "tick", url=redis_url, done=done)
        for out in lines:
            out.until(lambda line: "task tick paused across the app" in line)
        (listed,) = json.loads(run(config, "tasks", "list", url=redis_url, done=done).stdout)
        assert listed["name"] == "tick" and listed["paused"] is True
        run(config, "tasks", "resume", "tick", url=redis_url, done=done)
        for out in lines:
            out.until(lambda line: "task tick resumed across the app" in line)
        asked = json.loads(run(config, "tasks", "run", "tick", url=redis_url, done=done).stdout)
        assert asked == {"name": "tick", "queued": True}
        client = redis.Redis.from_url(redis_url)
        wait_for(lambda: client.llen(done) == 1, "the run asked for")
        history = json.loads(run(config, "tasks", "history", "tick", url=redis_url, done=done).stdout)
        assert [run_["outcome"] for run_ in history] == ["ok"]
    finally:
        stop(*procs)
    assert client.lrange(done, 0, -1) == [b"tick"]  # one process of the two ran it


async def test_a_cron_fire_missed_while_both_were_down_runs_once(tmp_path, redis_url):
    name, done = f"fleet{uuid.uuid4().hex[:8]}", f"done.{uuid.uuid4().hex}"
    spec = "0 0 1 1 *"  # yearly: no fire of its own comes during the test
    missed = croniter(spec, time.time()).get_prev(float)
    before = croniter(spec, missed).get_prev(float)
    async with started(RedisConnection(url=redis_url), app=App(name=name, env="test")) as app:
        records = RedisRecords(app.services["redis"], app.namespace)
        await records.finish("yearly", RunRecord(before, before, "ok"))  # it last ran a year before the one missed
    config = write_config(
        tmp_path,
        name,
        redis_url,
        "  - cls: CronTask\n    name: yearly\n"
        f"    settings: {{cron: '{spec}', misfire: once, call: 'tests.fleet_app:mark', params: {{name: yearly}}}}\n",
    )
    procs = [kaiju(config, url=redis_url, done=done) for _ in range(2)]
    try:
        verdicts = []
        ends = ("catching up the fire", "caught up elsewhere", "nothing to catch up")
        for proc in procs:  # the other one finds it claimed, or (when later) caught up already
            lines = OutputLines(proc.stderr).until(lambda line: any(end in line for end in ends))
            verdicts.append("ran" if "catching up the fire" in lines[-1] else "not")
        assert sorted(verdicts) == ["not", "ran"]
        client = redis.Redis.from_url(redis_url)
        wait_for(lambda: client.llen(done) == 1, "the catch-up run")
    finally:
        stop(*procs)
    assert client.lrange(done, 0, -1) == [b"yearly"]


def test_a_dead_letter_replayed_twice_at_once_runs_once(tmp_path, redis_url):
    name, done = f"fleet{uuid.uuid4().hex[:8]}", f"done.{uuid.uuid4().hex}"
    stream = f"{{test.{name}._stream.rpc}}"
    client = redis.Redis.from_url(redis_url)
    body = msgspec.json.encode({"jsonrpc": "2.0", "method": "work.item", "params": {"n": 7}})
    record = msgspec.json.encode({"id": "1-0", "deliveries": 5, "error": {"message": "boom"}, "time": time.time()})
    client.xadd(stream + ".dead", {"b": body, "x": record})
    config = write_config(
        tmp_path,
        name,
        redis_url,
        "  - cls: RedisStream\n  - cls: Streams\n  - cls: tests.fleet_app:Work\n"
        "  - cls: StreamListener\n    settings: {block_ms: 100, claim_idle_ms: 1000}\n",
    )
    dead = run(config, "streams", "dead", "rpc", url=redis_url, done=done).stdout.splitlines()
    assert [json.loads(line)["error_message"] for line in dead] == ["boom"]
    procs = [kaiju(config, url=redis_url, done=done) for _ in range(2)]
    try:
        for proc in procs:
            OutputLines(proc.stderr).until(lambda line: "listening" in line)
        replays = [kaiju(config, "streams", "replay", "rpc", "--all", url=redis_url, done=done) for _ in range(2)]
        outs = [json.loads(p.communicate(timeout=60)[0])["replayed"] for p in replays]
        assert sorted(len(o) for o in outs) == [0, 1]  # the letter went back once
        wait_for(lambda: client.llen(done) == 1, "the replayed message to run")
        assert client.xlen(stream) == 1 and client.xlen(stream + ".dead") == 0
        wait_for(lambda: client.xpending(stream, name)["pending"] == 0, "its acknowledgement")
    finally:
        stop(*procs)
    assert client.lrange(done, 0, -1) == [b"7"]
    assert run(config, "streams", "purge", "rpc", url=redis_url, done=done).stdout.strip() == "0"


def test_sigterm_hands_back_the_message_a_listener_holds_for_its_retry(tmp_path, redis_url):
    name, done = f"fleet{uuid.uuid4().hex[:8]}", f"done.{uuid.uuid4().hex}"
    stream = f"{{test.{name}._stream.rpc}}"
    client = redis.Redis.from_url(redis_url)
    config = write_config(
        tmp_path,
        name,
        redis_url,
        "  - cls: RedisStream\n  - cls: Streams\n  - cls: tests.fleet_app:Work\n"
        "  - cls: StreamListener\n    settings: {block_ms: 100, claim_idle_ms: 60000, retry_delays: [600]}\n",
    )
    proc = kaiju(config, url=redis_url, done=done)
    try:
        out = OutputLines(proc.stderr)
        out.until(lambda line: "listening" in line)
        body = msgspec.json.encode({"jsonrpc": "2.0", "method": "work.fail", "params": {"n": 3}})
        message_id = client.xadd(stream, {"b": body}).decode()
        out.until(lambda line: "message failed, retried later" in line)  # held for ten minutes
        proc.terminate()
        lines = out.until(lambda line: "handed back messages at stop" in line)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            stop(proc)
    assert client.lrange(done, 0, -1) == [b"fail3"] and "count=1" in lines[-1], lines[-1]
    # any consumer's next claim takes it at once, not after claim_idle_ms
    _, claimed, *_ = client.xautoclaim(stream, name, "other", min_idle_time=60_000, start_id="0-0")
    assert [entry_id.decode() for entry_id, _ in claimed] == [message_id]


def test_a_command_on_an_app_without_the_service_says_what_is_missing(tmp_path, redis_url):
    config = tmp_path / "bare.yml"
    config.write_text("main: {name: bare, env: test}\nservices:\n  - cls: RPCServer\n")
    proc = kaiju(config, "tasks", "list", url=redis_url, done="unused")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "the app has no tasks service (add `cls: Tasks` to the config)" in err, err
    proc = kaiju(config, "streams", "replay", "rpc", url=redis_url, done="unused")  # neither --id nor --all
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "one of the arguments --id --all is required" in err, err
