"""Tasks calling RPC methods through the dispatcher, and `tasks.list`."""

from __future__ import annotations

import asyncio

import pytest
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from kaiju import rpc
from kaiju.rpc.server import RPCServer
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.service import Service
from kaiju.tasks import CronTask, PeriodicTask, Tasks
from kaiju.testing.services import started

from tests.tasks.helpers import wait_until


class Reports(Service):
    service_name = "reports"

    async def start(self) -> None:
        self.seen: list[tuple[str, object, int]] = []

    @rpc.method
    async def build(self, kind: str, size: int = 1) -> dict:
        ctx = rpc.current()
        self.seen.append((ctx.correlation_id, ctx.scope, size))
        return {"kind": kind, "size": size}

    @rpc.method
    async def broken(self) -> None:
        raise RuntimeError("disk full")


async def test_method_task_calls_through_the_dispatcher_with_system_scope():
    reports = Reports()
    task = PeriodicTask(name="build", interval=0.05, method="reports.build", params={"kind": "daily", "size": 3})
    async with started(reports, RPCServer(), task):
        await wait_until(lambda: task.runs >= 3 and not task.running)
    assert task.failures == 0
    assert task.last_result == {"kind": "daily", "size": 3}
    ids = [cid for cid, _, _ in reports.seen]
    assert len(set(ids)) == len(ids) >= 3, "every run has its own correlation id"
    assert {scope for _, scope, _ in reports.seen} == {rpc.Scope.SYSTEM}


async def test_method_errors_are_counted_and_the_schedule_goes_on():
    task = PeriodicTask(name="broken", interval=0.05, method="reports.broken")
    async with started(Reports(), RPCServer(), task):
        await wait_until(lambda: task.failures >= 2)
    assert "disk full" in task.last_error, task.last_error


async def test_params_that_do_not_fit_the_method_are_refused_before_the_first_fire():
    from kaiju.runtime.service import SettingError

    task = PeriodicTask(name="bad", interval=0.05, method="reports.build", params={"size": "x"})
    with pytest.raises(SettingError, match="expected the params reports.build takes") as info:
        async with started(Reports(), RPCServer(), task):
            pass
    assert info.value.key == "params" and task.runs == 0


async def test_function_runs_get_a_request_context_of_their_own():
    seen = []

    async def job():
        ctx = rpc.current()
        seen.append((ctx.correlation_id, ctx.scope, ctx.time_left()))

    task = PeriodicTask(name="fn", interval=0.05, call=job, timeout=5)
    async with started(task):
        await wait_until(lambda: len(seen) >= 3)
    assert len({cid for cid, _, _ in seen}) == len(seen)
    assert {scope for _, scope, _ in seen} == {rpc.Scope.SYSTEM}
    assert all(0 < left <= 5 for _, _, left in seen), "the run's deadline is its timeout"


@pytest.mark.usefixtures("quiet_clock")
async def test_tasks_list_over_rpc():
    periodic = PeriodicTask(name="build", interval=0.05, method="reports.build", params={"kind": "daily"})
    cron = CronTask(name="nightly", cron="0 3 * * *", timezone="Europe/Berlin", method="reports.build", params=["x"])
    server = RPCServer()
    async with started(Reports(), server, Tasks(), periodic, cron):
        await wait_until(lambda: periodic.runs >= 1 and not periodic.running)
        listed = await server.call("tasks.list")
        one = await server.call("tasks.list", {"name": "nightly"})
    by_name = {t["name"]: t for t in listed}
    assert set(by_name) == {"build", "nightly"}
    assert by_name["build"]["type"] == "periodic"
    assert by_name["build"]["runs"] >= 1
    assert by_name["build"]["last_result"] == {"kind": "daily", "size": 1}
    assert by_name["nightly"] == one[0]
    assert one[0]["schedule"] == "0 3 * * *" and one[0]["timezone"] == "Europe/Berlin"
    assert one[0]["next_run"].endswith("+00:00") and one[0]["runs"] == 0
    next_run = datetime.fromisoformat(one[0]["next_run"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_run.hour, next_run.minute) == (3, 0)
    for key in ("next_run", "last_run", "last_result", "last_error", "runs", "misses", "failures"):
        assert key in one[0]


async def test_tasks_list_from_the_running_app_over_an_admin_http_server():
    """What docs/tasks.rst tells an operator to do: ask the running app over HTTP, system scope."""
    config = {"main": {"name": "tasks"}, "services": [
        {"cls": "RPCServer"},
        {"cls": "HTTPServer", "name": "admin_http", "settings": {"host": "127.0.0.1", "port": 0, "scope": "system"}},
        {"cls": "Tasks"},
        {"cls": "PeriodicTask", "name": "beat", "settings": {"interval": 0.05, "call": "asyncio:sleep", "params": [0, 7]}},
    ]}
    ep = Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        task = ep.app.services["beat"]
        await wait_until(lambda: task.runs >= 2 and not task.running)
        async with aiohttp.ClientSession() as session:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tasks.list"}
            async with session.post(ep.app.services["admin_http"].url, json=body) as response:
                answer = await response.json()
    [status] = answer["result"]
    assert status["name"] == "beat" and status["runs"] >= 2 and status["last_result"] == 7


class Stuck(Service):
    service_name = "stuck"

    async def start(self) -> None:
        pass

    @rpc.method
    async def work(self) -> None:
        await asyncio.sleep(60)


async def test_method_task_timeout_cuts_the_run():
    task = PeriodicTask(name="stuck_job", interval=0.05, timeout=0.05, method="stuck.work")
    async with started(Stuck(), RPCServer(), task):
        await wait_until(lambda: task.failures >= 2)
    assert task.last_error == "TimeoutError: the run took longer than 0.05 s"


async def test_method_task_without_timeout_is_bounded_by_the_dispatcher():
    task = PeriodicTask(name="stuck_job", interval=0.05, method="stuck.work")
    async with started(Stuck(), RPCServer(default_request_time=0.05), task):
        await wait_until(lambda: task.failures >= 2)
    assert task.last_error.startswith("RequestTimeout"), task.last_error


async def test_method_task_timeout_above_max_request_time_is_cut_to_it():
    task = PeriodicTask(name="stuck_job", interval=0.05, timeout=30, method="stuck.work")
    async with started(Stuck(), RPCServer(default_request_time=0.05, max_request_time=0.1), task):
        await wait_until(lambda: task.failures >= 1)
    assert task.last_error.startswith("RequestTimeout"), task.last_error


def tracebacks(caplog, text: str) -> int:
    return sum(1 for r in caplog.records if r.exc_info and text in str(r.exc_info[1]))


async def test_a_failing_method_run_logs_its_traceback_once(caplog):
    caplog.set_level("INFO")
    task = PeriodicTask(name="broken", interval=0.05, method="reports.broken")
    async with started(Reports(), RPCServer(), task):
        await wait_until(lambda: task.failures >= 2 and not task.running)
    assert task.failures >= 2
    assert tracebacks(caplog, "disk full") == task.failures  # the dispatcher's; the task logs one line each
    assert sum(1 for r in caplog.records if r.getMessage().startswith("task broken failed")) == task.failures


async def fails() -> None:
    raise RuntimeError("no paper")


async def test_a_failing_function_run_logs_its_traceback_once(caplog):
    caplog.set_level("INFO")
    task = PeriodicTask(name="printer", interval=0.05, call=fails)
    async with started(task):
        await wait_until(lambda: task.failures >= 2 and not task.running)
    assert tracebacks(caplog, "no paper") == task.failures


class SlowToStart(Service):
    """A method's service that starts in the same layer as the task calling it, slowly."""

    service_name = "slow"
    rpc: RPCServer  # the same dependency as the task's: the two share a start layer

    async def start(self) -> None:
        await asyncio.sleep(0.3)  # long enough for several fires of the task, were it armed
        task = self.app.services["beat"]
        self.fired_while_starting = task.last_fire is not None or task.runs > 0
        self.ready = True

    @rpc.method
    async def ping(self) -> bool:
        return self.ready  # an AttributeError if called before start() ended


async def test_a_task_does_not_fire_before_the_app_has_started():
    config = {
        "main": {"name": "t"},
        "services": [
            {"cls": "RPCServer"},
            {"cls": "tests.tasks.test_rpc:SlowToStart"},
            {"cls": "PeriodicTask", "name": "beat", "settings": {"interval": 0.02, "method": "slow.ping"}},
        ],
    }
    ep = Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)
    assert ["beat", "slow"] in ep.plan.layers
    async with ep:
        task, slow = ep.app.services["beat"], ep.app.services["slow"]
        await wait_until(lambda: task.runs >= 2 and not task.running)
    assert slow.fired_while_starting is False
    assert task.failures == 0 and task.last_error is None, task.last_error
