"""Tasks scheduled at run time through the Tasks service: add, pause, resume, remove."""

from __future__ import annotations

import asyncio

import pytest

from kaiju import rpc
from kaiju.locks.memory import MemoryLocks
from kaiju.rpc import RPCServer
from kaiju.runtime.service import Service
from kaiju.tasks import Tasks
from kaiju.testing.services import started


class Counter(Service):
    service_name = "counter"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0
        self.called = asyncio.Event()

    @rpc.method
    async def bump(self, by: int = 1) -> int:
        self.calls += by
        self.called.set()
        return self.calls

    async def job(self) -> str:
        self.calls += 1
        self.called.set()
        return "done"


async def wait_for_call(counter: Counter) -> None:
    counter.called.clear()
    await asyncio.wait_for(counter.called.wait(), 5)


async def test_add_a_function_task_pause_resume_and_remove():
    counter, tasks = Counter(), Tasks()
    async with started(counter, RPCServer(), MemoryLocks(), tasks) as app:
        task = await tasks.add("cleanup", interval=0.05, call=counter.job, policy="skip", timeout=2, singleton=True)
        await wait_for_call(counter)
        listed = await tasks.list_tasks("cleanup")
        assert listed[0]["name"] == "cleanup" and listed[0]["singleton"] and listed[0]["policy"] == "skip"
        await tasks.pause("cleanup")
        assert not task.enabled and task.status()["next_run"] is None
        await tasks.resume("cleanup")
        await wait_for_call(counter)
        await tasks.remove("cleanup")
        assert "cleanup" not in app.services and not await tasks.list_tasks("cleanup")


async def test_add_a_method_task_on_a_cron_schedule():
    counter, tasks = Counter(), Tasks()
    async with started(counter, RPCServer(), tasks):
        task = await tasks.add("bumper", cron="* * * * * *", method="counter.bump", params={"by": 2})
        await wait_for_call(counter)
        assert counter.calls >= 2 and task.kind == "cron"
    assert task.status()["next_run"] is None  # stopped with the Tasks service


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"interval": 0, "call": "x:y"}, "interval: expected float > 0"),
        ({"interval": 1, "method": "counter.nosuch"}, "method: expected a method some service of the app exposes"),
        ({"interval": 1, "cron": "* * * * *", "call": "x:y"}, "exactly one of interval= (a periodic task) and cron="),
        ({"interval": 1, "call": "x:y", "policy": "sometimes"}, "policy: expected one of skip, wait, cancel"),
    ],
)
async def test_bad_settings_are_refused_as_check_would(settings, message):
    counter, tasks = Counter(), Tasks()
    async with started(counter, RPCServer(), tasks) as app:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            await tasks.add("bad", **settings)
        assert "bad" not in app.services
        with pytest.raises(ValueError, match="already names"):
            await tasks.add("counter", interval=1, call=counter.job)


async def test_tasks_list_encodes_as_json_over_the_wire():
    import msgspec

    counter, rpc_server, tasks = Counter(), RPCServer(), Tasks()
    async with started(counter, rpc_server, tasks):
        await tasks.add("nightly", cron="0 3 * * *", timezone="Europe/Berlin", method="counter.bump")
        body = b'{"jsonrpc":"2.0","id":1,"method":"tasks.list"}'
        response, _ = await rpc_server.handle(body, scope=rpc.Scope.SYSTEM)
        (entry,) = msgspec.json.decode(response)["result"]
        assert entry["name"] == "nightly" and entry["schedule"] == "0 3 * * *" and entry["timezone"] == "Europe/Berlin"
        assert entry["job"] == {"method": "counter.bump"}
