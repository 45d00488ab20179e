"""Task spans: every run of a periodic or cron task is the root of a trace of its own.

The span is named after the task and carries its schedule (`kaiju.task.type`,
`kaiju.task.schedule`, ...), the fire time it runs for and how late its timer fired
(`kaiju.task.lateness_s`), and the outcome (`kaiju.task.outcome`: `ok`, `failed`,
`timeout`, or for a singleton task that did not run here `elsewhere`, `late` or
`lock failed`); a run that fails is an ERROR. A singleton task's wait for its lock is a
child span (`claim singleton`); the RPC call of a method task (transport "task") is a
child, and so is what the job does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kaiju.telemetry.tracing import Tracing, failed

__all__ = ["traced_run"]

_NOT_FAILED = frozenset({"ok", "elsewhere", "late"})  # the last two ran elsewhere, or were given up


async def traced_run(
    tracing: Tracing,
    task: Any,
    fire: float,
    claim: Callable[[float], Awaitable[str | None]],
    execute: Callable[[], Awaitable[str]],
) -> None:
    """One run of `task` for `fire` inside its root span: `claim(fire)` first for a
    singleton (None: claimed, else why not), then `execute()` (the outcome)."""
    span = tracing.root(task.name)
    if span.is_recording():
        span.set_attributes(_attributes(task, fire))
    with tracing.current(span):
        refused = None
        if task.singleton:
            with tracing.child("claim singleton") as lock:
                refused = await claim(fire)
                lock.set_attribute("kaiju.task.claimed", refused is None)
        outcome = refused if refused is not None else await execute()
        span.set_attribute("kaiju.task.outcome", outcome)
        if outcome not in _NOT_FAILED:
            error = task.last_error or outcome
            failed(span, error.partition(":")[0], error)


def _attributes(task: Any, fire: float) -> dict[str, Any]:
    schedule = {f"kaiju.task.{k}": v for k, v in task.describe().items() if isinstance(v, (str, int, float, bool))}
    lateness = task.last_lateness
    return {
        "kaiju.task.name": task.name,
        **schedule,
        "kaiju.task.fire_time": datetime.fromtimestamp(fire, UTC).isoformat(timespec="milliseconds"),
        "kaiju.task.singleton": task.singleton,
        **({"kaiju.task.lateness_s": round(lateness, 6)} if lateness is not None and fire == task.last_fire else {}),
    }
