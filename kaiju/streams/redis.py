"""`RedisStream`: streams on Redis Streams consumer groups (Redis >= 6.2; 7 for `lag`).

    XGROUP CREATE key group 0 MKSTREAM      create_group (reads history: nothing written before
                                            the first listener started is skipped)
    XREADGROUP ... COUNT n BLOCK ms >       read_new (BLOCK kept below the socket timeout)
    XACK + XREADGROUP, pipelined            ack_and_read_new: the last batch's acks ride on the
                                            next read (one round trip per batch, not two)
    XREADGROUP ... 0 + XPENDING             read_pending (own pending, with delivery counts)
    XAUTOCLAIM + XPENDING                   claim_idle
    XACK                                    ack, after processing
    XPENDING + XCLAIM JUSTID (script)       touch: only entries the consumer still holds
    XADD key.dead + XACK (script)           dead_letter, both or neither
    XPENDING + XCLAIM IDLE (script)         release: what a stopping consumer holds, claimable at once
    XRANGE + XADD + XDEL (script)           replay: a dead letter back on the stream, once
    XTRIM key.dead MINID / MAXLEN 0         purge
    XADD key * (no MAXLEN)                  add; trimming is a separate, safe step (see trim);
                                            auto-pipelined with other callers' commands
    XADD + WAIT n ms                        add with `replicas: n`: confirmed once n replicas
                                            hold it, on the same connection as the XADD

Why not `XADD MAXLEN ~ n`: it cuts the oldest entries whatever their state, so a group that
lags by more than `n` entries loses messages it never read, and pending entries vanish
under their consumers. `trim()` instead runs a script that finds, across all groups, the
oldest entry still needed (the first pending one, else the one after the last delivered)
and cuts at most the entries below it that exceed `maxlen` (`XTRIM MINID ~ <floor> LIMIT
<excess>`: whole radix-tree nodes, no entry copied). The scripts live in `kaiju.lua`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.lua import (
    STREAM_DEAD_LETTER,
    STREAM_PRUNE_CONSUMERS,
    STREAM_RELEASE,
    STREAM_REPLAY,
    STREAM_TOUCH,
    STREAM_TRIM,
)
from kaiju.redis import RedisConnection
from kaiju.runtime.types import NonNegativeInt, Positive
from kaiju.streams.base import (
    GroupInfo,
    GroupMissing,
    StreamBackend,
    StreamError,
    StreamMessage,
    StreamUnavailable,
    dead_letter_fields,
    decode_fields,
    encode_fields,
    parse_id,
)

__all__ = ["RedisStream"]

_TRIM_STEP = 10_000  # most entries one trim call cuts, so that one call stays short
_HANDED_BACK_IDLE_MS = 2**40  # an idle time longer than any claim_idle_ms: claimed at the next scan


def _is_id(stream_id: str) -> bool:
    try:
        parse_id(stream_id)
    except ValueError:
        return False
    return True


def _unavailable(exc: Exception) -> StreamUnavailable:
    return StreamUnavailable(f"Redis is unreachable: {exc}")


def _response_error(exc: Exception, stream: str, group: str) -> StreamError:
    # imported here (a rare path): naming RedisStream needs no client
    from redis.exceptions import ClusterDownError, ReadOnlyError, TryAgainError

    if str(exc).startswith("NOGROUP"):
        return GroupMissing(f"NOGROUP: no group {group!r} on stream {stream!r}")
    if isinstance(exc, (ClusterDownError, ReadOnlyError, TryAgainError)):
        return _unavailable(exc)  # a server between roles (a failover): worth a retry, as a lost connection is
    return StreamError(f"{stream}: {exc}")


def _new_messages(reply: Any) -> list[StreamMessage]:
    """The messages of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
    return [decode_fields(entry_id.decode(), fields) for entry_id, fields in entries]


class RedisStream(StreamBackend):
    """Streams on a Redis server, shared by every process that connects to it.

    Depends on `RedisConnection` (`redis`). Raises `StreamUnavailable` when Redis cannot be
    reached and `GroupMissing` when a group is gone; the listener handles both.
    """

    messaging_system = "redis"

    redis: RedisConnection

    block_margin_ms: int = 500
    """How far below the connection's socket timeout a blocking read must end (milliseconds)."""
    replicas: NonNegativeInt = 0
    """Replicas that must hold a message before `add()` returns (`WAIT`): with 1 or more, a
    message the producer was told is written survives a failover of the master."""
    replicas_timeout: Positive = 5.0
    """Seconds `add()` waits for `replicas` replicas; fewer by then raise `StreamUnavailable`
    (the message may still be there: at least once, a retry may write it twice)."""

    async def start(self) -> None:
        # redis-py's errors are looked up here, not at import: naming RedisStream needs no client
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisClusterException, ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._reply_error = ResponseError  # the server refused a command (NOGROUP, BUSYGROUP, ...)
        # RedisClusterException: no node reachable for a slot, e.g. while a master fails over
        self._net_errors = (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError)
        self._client = self.redis.client
        self._batch = self.redis.batch  # concurrent producers' XADDs share a round trip
        timeout = self.redis.socket_timeout
        if timeout and timeout * 1000 <= self.block_margin_ms:
            # blocking reads would shrink to 1 ms: a busy poll of Redis
            raise ValueError(
                f"{self.name}: the Redis connection's socket_timeout ({timeout} s) must exceed "
                f"block_margin_ms ({self.block_margin_ms} ms): raise socket_timeout (or set it to null), "
                f"or lower block_margin_ms"
            )
        if self.replicas and timeout and self.replicas_timeout >= timeout:
            # a WAIT outliving the socket timeout would fail, and be sent again, as a timeout
            raise ValueError(
                f"{self.name}: replicas_timeout ({self.replicas_timeout} s) must be below the Redis "
                f"connection's socket_timeout ({timeout} s)"
            )
        # a blocking read longer than the socket timeout would fail as a timeout
        self._max_block_ms = max(int(timeout * 1000) - self.block_margin_ms, 1) if timeout else None
        self._trim_script = self._client.register_script(STREAM_TRIM)
        self._prune_script = self._client.register_script(STREAM_PRUNE_CONSUMERS)
        self._touch_script = self._client.register_script(STREAM_TOUCH)
        self._dead_letter_script = self._client.register_script(STREAM_DEAD_LETTER)
        self._release_script = self._client.register_script(STREAM_RELEASE)
        self._replay_script = self._client.register_script(STREAM_REPLAY)

    # -- writing ----------------------------------------------------------------

    async def add(
        self, stream: str, body: bytes, headers: Mapping[str, str] | None = None, key: str | None = None
    ) -> str:
        fields = [part for pair in encode_fields(body, headers, key).items() for part in pair]
        try:
            added = self._batch.execute_command("XADD", stream, "*", *fields)
            if not self.replicas:
                return (await added).decode()
            # queued with the XADD: runs on the same connection (the stream's node), after it
            confirmed = self._batch.wait_replicas(self.replicas, int(self.replicas_timeout * 1000), stream)
            outcomes: tuple[Any, ...] = await asyncio.gather(added, confirmed, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        entry_id, count = outcomes
        if count < self.replicas:
            raise StreamUnavailable(
                f"{stream}: message {entry_id.decode()} reached {count} of {self.replicas} replicas "
                f"within {self.replicas_timeout}s"
            )
        return entry_id.decode()

    # -- groups and reading -------------------------------------------------------

    async def create_group(self, stream: str, group: str) -> None:
        try:
            await self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except self._reply_error as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise StreamError(f"{stream}: cannot create group {group!r}: {exc}") from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    def _block(self, block_ms: int) -> int:
        return min(block_ms, self._max_block_ms) if self._max_block_ms else block_ms

    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[StreamMessage]:
        try:
            reply = await self._client.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=self._block(block_ms) if block_ms > 0 else None
            )
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return _new_messages(reply)

    async def ack_and_read_new(
        self, stream: str, group: str, consumer: str, ack_ids: Sequence[str], count: int, block_ms: int
    ) -> list[StreamMessage]:
        if not ack_ids:
            return await self.read_new(stream, group, consumer, count, block_ms)
        try:
            # Redis runs the two in order: the XACK lands at once, even when the read then blocks
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xack(stream, group, *ack_ids)
                pipe.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=self._block(block_ms) if block_ms > 0 else None
                )
                acked, reply = await pipe.execute(raise_on_error=False)
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        for result in (acked, reply):
            if isinstance(result, self._reply_error):
                raise _response_error(result, stream, group)
            if isinstance(result, self._net_errors):
                raise _unavailable(result)
        return _new_messages(reply)

    async def _delivery_counts(self, stream: str, group: str, ids: list[str]) -> dict[str, int]:
        async with self._client.pipeline(transaction=False) as pipe:
            for msg_id in ids:
                pipe.xpending_range(stream, group, min=msg_id, max=msg_id, count=1)
            replies = await pipe.execute()
        return {r[0]["message_id"].decode(): r[0]["times_delivered"] for r in replies if r}

    async def read_pending(
        self, stream: str, group: str, consumer: str, count: int, after_id: str = "0-0"
    ) -> list[StreamMessage]:
        try:
            reply = await self._client.xreadgroup(group, consumer, {stream: after_id}, count=count)
            entries = (reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]) if reply else []
            if not entries:
                return []
            # a history read replays exactly the consumer's pending entries in this id range
            first, last = entries[0][0], entries[-1][0]
            rows = await self._client.xpending_range(
                stream, group, min=first, max=last, count=len(entries), consumername=consumer
            )
            counts = {r["message_id"]: r["times_delivered"] for r in rows}
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:
                await self._client.xack(stream, group, *gone)
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return [
            decode_fields(entry_id.decode(), fields, counts.get(entry_id, 1)) for entry_id, fields in entries if fields
        ]

    async def claim_idle(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int, start_id: str = "0-0"
    ) -> tuple[str, list[StreamMessage]]:
        try:
            reply = await self._client.xautoclaim(stream, group, consumer, min_idle_ms, start_id=start_id, count=count)
            next_start, entries = reply[0].decode(), [(i.decode(), f) for i, f in reply[1] if f]
            counts = await self._delivery_counts(stream, group, [i for i, _ in entries]) if entries else {}
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return next_start, [decode_fields(i, f, counts.get(i, 1)) for i, f in entries]

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            await self._touch_script(keys=[stream], args=[group, consumer, *ids])
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        try:
            return await self._client.xack(stream, group, *ids)
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    async def dead_letter(
        self,
        stream: str,
        group: str,
        consumer: str,
        message: StreamMessage,
        error: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> str:
        try:
            record = dead_letter_fields(message, group, consumer, error, details)
            fields = [part for pair in record.items() for part in pair]
            dead_id = await self._dead_letter_script(
                keys=[stream, stream + DEAD_LETTER_SUFFIX], args=[group, message.id, *fields]
            )
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return dead_id.decode()

    async def release(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            await self._release_script(keys=[stream], args=[group, consumer, _HANDED_BACK_IDLE_MS, *ids])
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    # -- dead letters -------------------------------------------------------------

    async def replay(self, stream: str, ids: Sequence[str] | None = None, count: int = 1000) -> list[str]:
        if ids is not None:
            ids = [i for i in ids if _is_id(i)]  # XRANGE refuses a malformed id: pass it over
            if not ids:
                return []
        try:
            added = await self._replay_script(keys=[stream, stream + DEAD_LETTER_SUFFIX], args=[count, *(ids or ())])
        except self._reply_error as exc:
            raise StreamError(f"{stream}: replay failed: {exc}") from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return [i.decode() for i in added]

    async def purge(self, stream: str, before_id: str | None = None) -> int:
        dead = stream + DEAD_LETTER_SUFFIX
        try:
            if before_id is None:
                return int(await self._client.xtrim(dead, maxlen=0, approximate=False))
            return int(await self._client.xtrim(dead, minid=before_id, approximate=False))
        except self._reply_error as exc:
            raise StreamError(f"{stream}: purge failed: {exc}") from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    # -- upkeep and introspection ---------------------------------------------------

    async def trim(self, stream: str, maxlen: int) -> int:
        try:
            return int(await self._trim_script(keys=[stream], args=[maxlen, _TRIM_STEP]))
        except self._reply_error as exc:
            raise StreamError(f"{stream}: trim failed: {exc}") from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    async def prune_consumers(self, stream: str, group: str, min_idle_ms: int) -> int:
        try:
            return int(await self._prune_script(keys=[stream], args=[group, min_idle_ms]))
        except self._reply_error as exc:
            raise _response_error(exc, stream, group) from exc
        except self._net_errors as exc:
            raise _unavailable(exc) from exc

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                length, groups = await pipe.execute(raise_on_error=False)
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        if isinstance(groups, self._reply_error):
            raise _response_error(groups, stream, group)
        for info in groups:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                last = info["last-delivered-id"]
                return GroupInfo(
                    length, info["pending"], info.get("lag"), last.decode() if isinstance(last, bytes) else last
                )
        raise GroupMissing(f"NOGROUP: no group {group!r} on stream {stream!r}")

    async def read_range(
        self, stream: str, count: int = 100, start_id: str = "0-0"
    ) -> list[tuple[str, dict[str, bytes]]]:
        try:
            rows = await self._client.xrange(stream, min=start_id, max="+", count=count)
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
        return [(i.decode(), {k.decode(): v for k, v in f.items()}) for i, f in rows]

    async def length(self, stream: str) -> int:
        try:
            return await self._client.xlen(stream)
        except self._net_errors as exc:
            raise _unavailable(exc) from exc
