"""Durations are measured on a clock meant for it: on uvloop, whose loop clock moves in whole
milliseconds, request logs and latency histograms still see a fast call's fraction of one."""

from __future__ import annotations

import asyncio
import logging

import uvloop

from kaiju import rpc
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import Service
from kaiju.testing.services import started


class Echo(Service):
    service_name = "echo"

    @rpc.method(permission=Scope.GUEST)
    async def echo(self, data: int) -> int:
        return data


def test_request_log_durations_have_sub_millisecond_resolution_on_uvloop(caplog):
    async def calls() -> None:
        srv = RPCServer(request_logs=True)
        async with started(Echo(), srv):
            for n in range(20):
                await srv.call("echo.echo", {"data": n})

    with caplog.at_level(logging.INFO):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(calls())
    durations = [r.duration_ms for r in caplog.records if r.getMessage() == "RPC request"]
    assert len(durations) == 20
    # the loop's clock would give whole milliseconds (mostly 0.0): a finer clock gives fractions
    assert any(d != round(d) for d in durations), durations


def test_latency_histograms_have_sub_millisecond_resolution_on_uvloop():
    from kaiju.rpc.stats import RPCStats

    stats = RPCStats()  # the Metrics service's middleware, with its default clock

    async def calls() -> None:
        srv = RPCServer(middleware=[stats])
        async with started(Echo(), srv):
            for n in range(20):
                await srv.call("echo.echo", {"data": n})

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(calls())
    latency = stats.methods["echo.echo"].latency["internal"]
    assert sum(latency.counts) == 20
    # 20 fast calls on the loop's clock would sum to whole milliseconds (mostly 0)
    assert latency.sum > 0 and latency.sum * 1000 != round(latency.sum * 1000), latency.sum
