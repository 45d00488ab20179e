"""Auto-pipelining: Redis commands issued in one loop iteration travel as one pipeline.

    batch = AutoPipeline(client)                     # RedisConnection.batch
    value = await batch.execute_command("GET", key)  # like client.execute_command(...)
    token = await batch.run_script(LOCK_ACQUIRE, [key, fence], [lock_id, px])

Every command queued before the loop runs its next round of callbacks is sent in one
`client.pipeline(transaction=False)`: one write and one read on one connection, instead
of a round trip and redis-py's per-command work for each caller. Each caller gets its own
result or error, as if it were alone (a command's error fails only its caller; a broken
connection fails every command of the pipeline), and a caller that awaits each command
before issuing the next keeps its order. A lone command goes out as a plain command.

On a Cluster the pipeline is redis-py's cluster pipeline, which sends each node its
commands (routed by slot) in order on one connection; `node=` pins a keyless command
(WAIT) to the node of a key. Blocking commands (XREADGROUP BLOCK) must not go through
here: they would hold up every command sent with them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
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
        self._sending: set[asyncio.Task] = set()  # kept referenced until done
        self._shas: dict[str, str] = {}
        self.counts = {"commands": 0, "pipelines": 0}  # read by tests and benches

    def execute_command(self, *args: Any, **options: Any) -> asyncio.Future:
        """Queue one command (redis-py's arguments and options); await the returned future
        for its reply, parsed as `client.execute_command` would parse it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((args, options, future))
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

    async def close(self) -> None:
        """Send what is queued and wait for every pipeline in flight (before the client closes)."""
        if self._queue:
            self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        queue = [item for item in queue if not item[2].done()]  # callers cancelled meanwhile
        if not queue:
            return
        task = asyncio.get_running_loop().create_task(self._send(queue))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]]) -> None:
        self.counts["commands"] += len(queue)
        if len(queue) == 1:
            args, options, future = queue[0]
            try:
                result = await self.client.execute_command(*args, **options)
            except Exception as exc:  # noqa: BLE001 - any error is the caller's to handle
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
        except Exception as exc:  # noqa: BLE001 - the connection broke: every caller hears of it
            for _, _, future in queue:
                _settle(future, exc)
            return
        for (_, _, future), result in zip(queue, results):
            _settle(future, result)


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
