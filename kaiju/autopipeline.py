"""Auto-pipelining: Redis commands issued in one loop iteration travel as one pipeline.

    batch = AutoPipeline(client)                     # RedisConnection.batch
    value = await batch.execute_command("GET", key)  # like client.execute_command(...)
    token = await batch.run_script(LOCK_ACQUIRE, [key, fence], [lock_id, px])
    replicas = await batch.wait_replicas(1, 5000, key)  # WAIT behind the writes queued so far

Every command queued before the loop runs its next round of callbacks is sent in one
`client.pipeline(transaction=False)`: one write and one read on one connection, instead
of a round trip and redis-py's per-command work for each caller. Each caller gets its own
result or error, as if it were alone (a command's error fails only its caller; a broken
connection fails every command of the pipeline), and a caller that awaits each command
before issuing the next keeps its order. A lone command goes out as a plain command.

On a Cluster the pipeline is redis-py's cluster pipeline, which sends each node its
commands (routed by slot) in order on one connection. `wait_replicas` puts one `WAIT`
at the end of the pipeline (one per node on a Cluster) for every caller that asked:
`WAIT` covers every earlier write of its connection, and one per pipeline keeps the
pipeline's time within one WAIT timeout. Blocking commands (XREADGROUP BLOCK) must not
go through here: they would hold up every command sent with them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from functools import partial
from typing import Any

__all__ = ["AutoPipeline"]


class AutoPipeline:
    """A batching layer over a `redis.asyncio.Redis` (or `RedisCluster`) client."""

    def __init__(self, client: Any, *, cluster: bool = False):
        from redis.exceptions import (
            NoScriptError,  # here, not at import: naming it needs no client
        )

        self.client = client
        self.cluster = cluster
        self._no_script = NoScriptError
        self._queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]] = []
        # node name (None off a Cluster) -> [replicas, timeout ms, node, callers' futures]
        self._waits: dict[str | None, list[Any]] = {}
        self._sending: set[asyncio.Task] = set()  # kept referenced until done
        self._shas: dict[str, str] = {}
        self.counts = {"commands": 0, "pipelines": 0}  # read by tests and benches

    def execute_command(self, *args: Any, **options: Any) -> asyncio.Future:
        """Queue one command (redis-py's arguments and options); await the returned future
        for its reply, parsed as `client.execute_command` would parse it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue and not self._waits:
            loop.call_soon(self._flush)
        self._queue.append((args, options, future))
        return future

    def wait_replicas(self, replicas: int, timeout_ms: int, key: str | bytes | None = None) -> asyncio.Future:
        """`WAIT replicas timeout_ms` behind every command queued so far (on `key`'s node on a
        Cluster); the future's result is the count of replicas that acknowledged them. The
        callers of one loop iteration share one WAIT (the largest count and timeout asked)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        node = self.node_of(key) if key is not None else None
        name = None if node is None else node.name
        wait = self._waits.get(name)
        if wait is None:
            if not self._queue and not self._waits:
                loop.call_soon(self._flush)
            wait = self._waits[name] = [replicas, timeout_ms, node, []]
        wait[0], wait[1] = max(wait[0], replicas), max(wait[1], timeout_ms)
        wait[3].append(future)
        return future

    def node_of(self, key: str | bytes) -> Any:
        """On a Cluster, the node that holds `key`'s slot (pass it as `target_nodes=`); else None."""
        return self.client.get_node_from_key(key) if self.cluster else None

    async def run_script(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA (EVALSHA), loading it first when the server lacks it
        (a new or restarted server, or a new master after a failover)."""
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except self._no_script:
            await self.client.script_load(script)
            return await self.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued and wait for every pipeline in flight (before the client closes),
        at most `timeout` seconds: what is still on its way then is cancelled."""
        if self._queue or self._waits:
            self._flush()
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        queue = [item for item in queue if not item[2].done()]  # callers cancelled meanwhile
        loop = asyncio.get_running_loop()
        waits, self._waits = self._waits, {}
        for replicas, timeout_ms, node, callers in waits.values():  # last: behind every write
            shared = loop.create_future()
            shared.add_done_callback(partial(_fan_out, callers))
            queue.append((("WAIT", replicas, timeout_ms), {} if node is None else {"target_nodes": node}, shared))
        if not queue:
            return
        task = loop.create_task(self._send(queue))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]]) -> None:
        try:
            await self._exchange(queue)
        except asyncio.CancelledError:
            # close() gave up on it: each caller gets an error, never a wait without end nor a
            # cancellation it did not ask for
            error = ConnectionError("the Redis connection was closed before the reply came")
            for _, _, future in queue:
                _settle(future, error)
            raise

    async def _exchange(self, queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]]) -> None:
        self.counts["commands"] += len(queue)
        if len(queue) == 1:
            args, options, future = queue[0]
            try:
                result = await self.client.execute_command(*args, **options)
            except Exception as exc:
                _settle(future, exc)
            else:
                _settle(future, result)
            return
        self.counts["pipelines"] += 1
        pipe = self.client.pipeline(transaction=False)
        for args, options, _ in queue:
            pipe.execute_command(*args, **options)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, _, future in queue:
                _settle(future, exc)
            return
        for (_, _, future), result in zip(queue, results, strict=True):  # one result per command sent
            _settle(future, result)


def _fan_out(callers: list[asyncio.Future], shared: asyncio.Future) -> None:
    outcome = shared.exception() if not shared.cancelled() else asyncio.CancelledError()
    for future in callers:
        if not future.done():
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(shared.result())


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
