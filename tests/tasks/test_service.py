"""PeriodicTask and CronTask on real time: short intervals, 6-field cron, bounded waits."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
import time_machine

from kaiju.config import ConfigError
from kaiju.runtime.plan import build_plan
from kaiju.runtime.service import SettingError
from kaiju.runtime.service import SettingError
from kaiju.tasks import CronTask, PeriodicTask
from kaiju.testing.services import started

from tests.tasks.helpers import WAIT, Recorder, wait_until


def periodic(job, **settings) -> PeriodicTask:
    task = PeriodicTask(name=settings.pop("name", "job"), interval=settings.pop("interval", 0.05), call=job, **settings)
    return task


# -- running -----------------------------------------------------------------


async def test_periodic_runs_and_counts():
    job = Recorder()
    task = periodic(job, params={"x": 1})
    async with started(task):
        await wait_until(lambda: task.runs >= 5)
    assert job.calls == task.runs >= 5
    assert task.failures == 0
    assert task.last_result == {"n": task.runs, "x": 1}
    after_stop = job.calls
    await asyncio.sleep(0.2)
    assert job.calls == after_stop, "no run after stop"


async def test_cron_six_fields_runs_every_second():
    job = Recorder()
    task = CronTask(name="every_second", cron="* * * * * *", call=job)
    async with started(task):
        await wait_until(lambda: task.runs >= 2, timeout=4)
        status = task.status()
    assert job.calls >= 2
    # fires are on whole seconds
    assert task.last_fire == int(task.last_fire)
    assert datetime.fromisoformat(status["next_run"]).microsecond == 0


async def test_call_by_import_path_with_list_params():
    task = PeriodicTask(name="sleeper", interval=0.05, call="asyncio:sleep", params=[0, "done"])
    async with started(task):
        await wait_until(lambda: task.runs >= 1)
        await wait_until(lambda: not task.running)
    assert task.last_result == "done"
    assert task.status()["job"] == {"call": "asyncio:sleep"}


async def test_delay_moves_the_first_fire():
    task = periodic(Recorder(), interval=0.05, delay=30)
    before = time.time()
    async with started(task):
        assert task._next_base >= before + 30
        assert task.runs == 0


async def test_jitter_moves_fires_later_within_bounds():
    task = periodic(Recorder(), interval=0.05, jitter=0.02)
    offsets = []
    async with started(task):
        for _ in range(5):
            base = task._next_base
            await wait_until(lambda: task._next_base != base)
            offsets.append(task._next_at - task._next_base)
    assert all(0 <= o <= 0.02 for o in offsets)
    assert len(set(offsets)) > 1


@pytest.mark.usefixtures("quiet_clock")
async def test_a_timer_woken_before_its_wall_clock_time_waits_again():
    job = Recorder()
    task = CronTask(name="far", cron="0 0 1 1 *", call=job)  # next new year
    async with started(task):
        task._timer.cancel()
        # as if the clock had been set back: the timer comes while the fire time is hours away
        task._on_timer(task._next_base, task._next_at)
        await asyncio.sleep(0.05)
        assert job.calls == 0 and task.runs == 0
        assert task._timer is not None


def test_a_task_needs_a_schedule():
    from kaiju.tasks import ScheduledTask

    with pytest.raises(TypeError):
        ScheduledTask(call=noop)


async def test_disabled_task_never_fires():
    job = Recorder()
    task = periodic(job, enabled=False)
    async with started(task):
        await asyncio.sleep(0.2)
        assert task.status()["next_run"] is None
    assert job.calls == 0


# -- overlap policies ---------------------------------------------------------


async def test_policy_skip_counts_misses_and_never_overlaps():
    job = Recorder(hold=True)
    task = periodic(job, policy="skip")
    async with started(task):
        await wait_until(lambda: task.misses >= 3)
        assert task.runs == 1
        job.release.set()
        await wait_until(lambda: task.runs >= 3)
    assert job.max_active == 1


async def test_a_skipped_tick_is_logged_once_per_overlong_run(caplog):
    job = Recorder(hold=True)
    task = periodic(job, name="long", policy="skip")
    with caplog.at_level(logging.INFO):
        async with started(task):
            await wait_until(lambda: task.misses >= 3)
            job.release.set()
    # ("fell behind" lines, which a loaded machine may add, are another message)
    skipped = [r for r in caplog.records if "still running" in r.getMessage() and getattr(r, "task", None) == "long"]
    assert len(skipped) == 1, [r.getMessage() for r in skipped]
    assert skipped[0].levelno == logging.INFO
    assert re.fullmatch(r"task long still running, fire at \S+ skipped", skipped[0].getMessage())


async def test_policy_wait_runs_once_more_as_soon_as_the_run_ends():
    job = Recorder(hold=True)
    task = periodic(job, policy="wait")
    async with started(task):
        await wait_until(lambda: task.misses >= 2)  # 1 tick waits, the others are misses
        assert task.runs == 1
        assert task._pending is not None
        job.release.set()
        await wait_until(lambda: task.runs >= 2)
    assert job.events[:3] == ["start1", "end1", "start2"]
    assert job.max_active == 1


async def test_policy_cancel_cancels_the_running_one_and_starts_anew():
    job = Recorder(hold=True)
    task = periodic(job, policy="cancel", shutdown_timeout=0.1)
    async with started(task):
        await wait_until(lambda: task.runs >= 3)
        assert task.cancelled >= 2
        assert job.cancelled >= 2
    assert job.max_active == 1
    # every cancel counted reached a run that had started; stop cancelled at most one more
    # (misses are not asserted: a loaded machine may hold the loop past a whole period)
    assert task.cancelled <= job.cancelled <= task.cancelled + 1
    # each cancelled run ended before the next one started
    assert job.events[:4] == ["start1", "end1", "start2", "end2"]


class SlowUnwind:
    """A job that runs until cancelled, then unwinds only once `unwind` is set."""

    def __init__(self):
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.unwind = asyncio.Event()

    async def __call__(self):
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await self.unwind.wait()  # cleanup outlasting several periods
            raise
        finally:
            self.active -= 1


async def test_policy_cancel_starts_no_run_while_a_cancelled_one_unwinds():
    job = SlowUnwind()
    # a short stop grace: the run going on at the end is cancelled at once instead of after WAIT
    task = periodic(job, policy="cancel", shutdown_timeout=0.05)
    async with started(task):
        # fires keep coming while the first run unwinds; before the fix the third one started
        await wait_until(lambda: job.calls >= 2 or task.misses >= 2)
        assert job.calls == 1 and job.active == 1
        # only the run that had started counts as cancelled; the fires replaced while waiting are misses
        assert task.cancelled == 1
        job.unwind.set()
        await wait_until(lambda: job.calls >= 3)
    assert job.max_active == 1
    assert job.active == 0 and not task.running, "stop waits for every unfinished run"
    assert job.calls - 1 <= task.cancelled <= job.calls


# -- stop ------------------------------------------------------------------------


async def test_stop_waits_for_a_running_callback():
    job = Recorder(hold=True)
    task = periodic(job, interval=60, shutdown_timeout=WAIT)

    async def release_soon():
        await wait_until(lambda: task.running)
        await wait_until(lambda: task._stopping, what="the stop to begin")  # so the stop has a run to wait for
        job.release.set()

    releaser = asyncio.create_task(release_soon())
    async with started(task):
        await wait_until(lambda: job.calls == 1)
    # stop returned only after the run completed normally
    await asyncio.wait_for(releaser, WAIT)
    assert job.events == ["start1", "end1"]
    assert job.cancelled == 0
    assert task.last_result == {"n": 1}


async def test_stop_cancels_a_run_past_the_shutdown_timeout():
    job = Recorder(hold=True)
    task = periodic(job, interval=60, shutdown_timeout=0.1)
    async with started(task):
        await wait_until(lambda: job.calls == 1)
    assert job.cancelled == 1
    assert not task.running


# -- errors and timeouts ----------------------------------------------------------


async def test_errors_are_logged_counted_and_the_schedule_goes_on(caplog):
    job = Recorder(fail=True)
    task = periodic(job, name="flaky")
    with caplog.at_level(logging.ERROR):
        async with started(task):
            await wait_until(lambda: task.failures >= 3)
    assert task.runs >= 3
    assert task.last_error.startswith("ValueError: boom")
    failed = [r for r in caplog.records if getattr(r, "task", None) == "flaky"]
    assert failed and "flaky" in failed[0].getMessage()
    assert failed[0].exc_info is not None


async def test_timeout_per_run():
    job = Recorder(hold=True)
    task = periodic(job, interval=0.05, timeout=0.05)
    async with started(task):
        await wait_until(lambda: task.failures >= 2)
    assert "longer than 0.05 s" in task.last_error
    assert job.cancelled >= 2


# -- time zone on real time ---------------------------------------------------------


async def test_cron_fires_in_its_time_zone():
    zone = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: its minutes differ from UTC's
    spec = "0 12 * * * *"  # every second of 12:00-12:01 only
    job = Recorder()
    local = CronTask(name="kathmandu", cron=spec, timezone="Asia/Kathmandu", call=job)
    utc = CronTask(name="utc", cron=spec, call=Recorder())
    # the wall clock (ticking on from there) set inside that minute in Kathmandu, wherever it stands
    with time_machine.travel(datetime(2030, 6, 1, 12, 0, 0, 500000, tzinfo=zone), tick=True):
        async with started(local, utc):
            await wait_until(lambda: local.runs >= 1)
            # read in UTC the same spec is hours away
            away = datetime.fromisoformat(utc.status()["next_run"]) - datetime.now(timezone.utc)
            assert away.total_seconds() > 600
            assert utc.runs == 0
    assert job.calls >= 1


# -- status ---------------------------------------------------------------------------


async def test_status_is_plain_data():
    class Opaque:
        pass

    async def opaque():
        return Opaque()

    task = periodic(opaque, name="opaque", jitter=0.01)
    async with started(task):
        await wait_until(lambda: task.runs >= 1 and not task.running)
        status = task.status()
    msgspec.json.encode(status)
    assert status["name"] == "opaque"
    assert status["type"] == "periodic"
    assert status["schedule"] == "every 0.05 s"
    assert status["last_result"].startswith("<")
    for key in ("next_run", "last_run", "last_result", "last_error", "runs", "misses", "failures"):
        assert key in status


# -- settings ------------------------------------------------------------------------


async def noop():
    return None


def sync_function():
    return None


def plan_error(task) -> str:
    with pytest.raises(ConfigError) as info:
        build_plan(None, [task])
    return str(info.value)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"interval": 1}, "method: expected exactly one of `method` (an RPC method) and `call` (a function)"),
        ({"interval": 1, "method": "demo.echo", "call": noop}, "method: expected exactly one of `method`"),
        ({"interval": 1, "method": "echo"}, 'method: expected an RPC method name "service.method", got "echo"'),
        ({"interval": 1, "call": noop, "policy": "queue"}, 'policy: expected one of skip, wait, cancel, got "queue"'),
        ({"interval": 0, "call": noop}, "interval: expected float > 0.0, got 0"),
        ({"interval": "1", "call": noop}, 'interval: expected float, got "1"'),
        ({"interval": 1, "delay": -1, "call": noop}, "delay: expected float >= 0.0, got -1"),
        ({"interval": 1, "timeout": 0, "call": noop}, "timeout: expected float > 0.0, got 0"),
        ({"interval": 1, "jitter": -1, "call": noop}, "jitter: expected float >= 0.0, got -1"),
        ({"interval": 1, "jitter": 1, "call": noop}, "jitter: expected less than interval (1 s), got 1"),
        ({"interval": 0.1, "jitter": 0.3, "call": noop}, "jitter: expected less than interval (0.1 s), got 0.3"),
        ({"interval": 1, "params": "x", "call": noop}, 'params: expected mapping or list or null, got "x"'),
        ({"interval": 1, "call": "no_such_module_xyz:f"}, 'call: cannot import module "no_such_module_xyz"'),
        ({"interval": 1, "call": "asyncio"}, 'call: expected "package.module:function", got "asyncio"'),
        ({"interval": 1, "call": sync_function}, "call: expected an async function"),
    ],
)
def test_periodic_settings_errors(settings, message):
    assert plan_error(PeriodicTask(name="bad", **settings)).startswith(f"<python>: services[bad].settings.{message}")


def test_required_settings_are_checked_at_construction():
    with pytest.raises(AttributeError, match="interval"):
        PeriodicTask(name="bad", call=noop)
    with pytest.raises(AttributeError, match="cron"):
        CronTask(name="bad", call=noop)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"cron": "61 * * * *", "call": noop}, "cron: invalid spec"),
        ({"cron": "* * * *", "call": noop}, "expected 5 fields"),
        ({"cron": "* * * * *", "timezone": "Europe/Nowhere", "call": noop}, 'unknown IANA time zone "Europe/Nowhere"'),
    ],
)
def test_cron_settings_errors(settings, message):
    with pytest.raises(SettingError, match=message):
        CronTask(name="bad", **settings)


async def test_singleton_without_locks_fails_at_start():
    task = periodic(Recorder(), singleton=True)
    with pytest.raises(SettingError, match="singleton: expected a Locks service in the app for singleton: true"):
        async with started(task):
            pass


async def test_method_without_rpc_fails_at_start():
    task = PeriodicTask(name="m", interval=1, method="demo.echo")
    with pytest.raises(SettingError, match='method: expected an RPCServer service in the app to call "demo.echo"'):
        async with started(task):
            pass
