"""`MemoryStream`: streams with consumer groups inside one process.

The same model as Redis Streams (entries, groups, a pending list per group with delivery
counts, claiming of idle messages), kept in dicts and lists and woken by asyncio events.
Nothing survives the process: use it for development, tests and single-process apps.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.streams.base import (
    GroupInfo,
    GroupMissing,
    StreamBackend,
    StreamMessage,
    dead_letter_fields,
    decode_fields,
    encode_fields,
    format_id,
    parse_id,
)

__all__ = ["MemoryStream"]

_Id = tuple[int, int]

# a stream is compacted (the entries every group is done with dropped) after this many
# acknowledgements: one compaction costs about the stream's length, so this keeps it cheap
_COMPACT_EVERY = 1024


def _parse_or_none(stream_id: str) -> _Id | None:
    try:
        return parse_id(stream_id)
    except ValueError:
        return None


def _now_ms() -> float:
    return time.monotonic() * 1000.0


class _Pending:
    __slots__ = ("consumer", "delivered_at", "deliveries")

    def __init__(self, consumer: str, deliveries: int = 1):
        self.consumer = consumer
        self.delivered_at = _now_ms()
        self.deliveries = deliveries


class _Group:
    __slots__ = ("last_id", "pel")

    def __init__(self, last_id: _Id):
        self.last_id = last_id
        # insertion order is id order: entries join only through read_new, in id order
        self.pel: dict[_Id, _Pending] = {}


class _Stream:
    __slots__ = ("ids", "entries", "last_id", "groups", "changed", "acked")

    def __init__(self) -> None:
        self.ids: list[_Id] = []
        self.entries: dict[_Id, dict[bytes, bytes]] = {}
        self.last_id: _Id = (0, 0)
        self.groups: dict[str, _Group] = {}
        self.changed = asyncio.Event()
        self.acked = 0  # acknowledgements since the last compaction

    def append(self, fields: dict[bytes, bytes]) -> _Id:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self.last_id
        new_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        self.ids.append(new_id)
        self.entries[new_id] = fields
        self.last_id = new_id
        # wake every reader waiting on this stream, then arm a fresh event
        self.changed.set()
        self.changed = asyncio.Event()
        return new_id


def _floor(s: _Stream) -> _Id:
    """The oldest entry some group still needs: its first pending one, else the one after its last read."""
    return min(next(iter(g.pel)) if g.pel else (g.last_id[0], g.last_id[1] + 1) for g in s.groups.values())


class MemoryStream(StreamBackend):
    """Streams kept in this process's memory, with the same group, acknowledgement and
    redelivery semantics as `RedisStream`. No settings.

    Memory stays bounded without `maxlen`: after every 1024 acknowledgements on a stream,
    the entries every group of it has acknowledged are dropped (so a group created later
    does not see them). Streams without a group (the dead-letter streams) are kept whole.
    """

    cancel_safe_reads = True  # every read takes its messages synchronously, after any wait
    messaging_system = "memory"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._streams: dict[str, _Stream] = {}

    # -- helpers --------------------------------------------------------------

    def _stream(self, stream: str) -> _Stream:
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        return s

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s is not None else None
        if s is None or g is None:
            raise GroupMissing(f"NOGROUP: no group {group!r} on stream {stream!r}")
        return s, g

    # -- writing ----------------------------------------------------------------

    async def add(
        self, stream: str, body: bytes, headers: Mapping[str, str] | None = None, key: str | None = None
    ) -> str:
        return format_id(*self._stream(stream).append(encode_fields(body, headers, key)))

    # -- groups and reading -------------------------------------------------------

    async def create_group(self, stream: str, group: str) -> None:
        s = self._stream(stream)
        if group not in s.groups:
            s.groups[group] = _Group((0, 0))

    def _take_new(self, s: _Stream, g: _Group, consumer: str, count: int) -> list[StreamMessage]:
        start = bisect.bisect_right(s.ids, g.last_id)
        taken = s.ids[start : start + count]
        if not taken:
            return []
        g.last_id = taken[-1]
        out = []
        for entry_id in taken:
            g.pel[entry_id] = _Pending(consumer)
            out.append(decode_fields(format_id(*entry_id), s.entries[entry_id], 1))
        return out

    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[StreamMessage]:
        s, g = self._group(stream, group)
        found = self._take_new(s, g, consumer, count)
        if found or block_ms <= 0:
            return found
        try:
            await asyncio.wait_for(s.changed.wait(), block_ms / 1000.0)
        except TimeoutError:
            return []
        # taking is synchronous after the wake-up, so a cancelled wait never loses a message
        s, g = self._group(stream, group)
        return self._take_new(s, g, consumer, count)

    async def read_pending(
        self, stream: str, group: str, consumer: str, count: int, after_id: str = "0-0"
    ) -> list[StreamMessage]:
        s, g = self._group(stream, group)
        after = parse_id(after_id)
        out: list[StreamMessage] = []
        gone: list[_Id] = []
        for entry_id, p in g.pel.items():
            if entry_id <= after or p.consumer != consumer:
                continue
            fields = s.entries.get(entry_id)
            if fields is None:
                gone.append(entry_id)
                continue
            p.deliveries += 1
            p.delivered_at = _now_ms()
            out.append(decode_fields(format_id(*entry_id), fields, p.deliveries))
            if len(out) >= count:
                break
        for entry_id in gone:
            del g.pel[entry_id]
        return out

    async def claim_idle(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int, start_id: str = "0-0"
    ) -> tuple[str, list[StreamMessage]]:
        s, g = self._group(stream, group)
        start = parse_id(start_id)
        now = _now_ms()
        out: list[StreamMessage] = []
        gone: list[_Id] = []
        next_start = "0-0"
        for entry_id, p in g.pel.items():
            if entry_id < start or now - p.delivered_at < min_idle_ms:
                continue
            if len(out) >= count:
                next_start = format_id(*entry_id)
                break
            fields = s.entries.get(entry_id)
            if fields is None:
                gone.append(entry_id)
                continue
            p.consumer = consumer
            p.deliveries += 1
            p.delivered_at = now
            out.append(decode_fields(format_id(*entry_id), fields, p.deliveries))
        for entry_id in gone:
            del g.pel[entry_id]
        return next_start, out

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        _, g = self._group(stream, group)
        now = _now_ms()
        for msg_id in ids:
            p = g.pel.get(parse_id(msg_id))
            if p is not None and p.consumer == consumer:
                p.delivered_at = now

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        s, g = self._group(stream, group)
        done = 0
        for msg_id in ids:
            if g.pel.pop(parse_id(msg_id), None) is not None:
                done += 1
        s.acked += done
        if s.acked >= _COMPACT_EVERY:
            self._compact(s)
        return done

    @staticmethod
    def _compact(s: _Stream) -> None:
        """Drop the entries every group has acknowledged."""
        drop = bisect.bisect_left(s.ids, _floor(s)) if s.groups else 0
        for entry_id in s.ids[:drop]:
            del s.entries[entry_id]
        del s.ids[:drop]
        s.acked = 0

    async def dead_letter(
        self,
        stream: str,
        group: str,
        consumer: str,
        message: StreamMessage,
        error: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> str:
        s, g = self._group(stream, group)
        fields = dead_letter_fields(message, group, consumer, error, details)
        dead_id = self._stream(stream + DEAD_LETTER_SUFFIX).append(fields)
        if g.pel.pop(parse_id(message.id), None) is not None:
            s.acked += 1
            if s.acked >= _COMPACT_EVERY:
                self._compact(s)
        return format_id(*dead_id)

    async def release(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        _, g = self._group(stream, group)
        for msg_id in ids:
            p = g.pel.get(parse_id(msg_id))
            if p is not None and p.consumer == consumer:
                p.delivered_at = -math.inf  # idle since forever: the next claim takes it

    # -- dead letters -------------------------------------------------------------

    async def replay(self, stream: str, ids: Sequence[str] | None = None, count: int = 1000) -> list[str]:
        dead = self._streams.get(stream + DEAD_LETTER_SUFFIX)
        if dead is None:
            return []
        wanted = dead.ids[:count] if ids is None else [i for i in map(_parse_or_none, ids) if i in dead.entries]
        target, replayed = self._stream(stream), []
        for entry_id in wanted:
            fields = {k: v for k, v in dead.entries.pop(entry_id).items() if k != b"x"}
            replayed.append(format_id(*target.append(fields)))
        dead.ids = [i for i in dead.ids if i in dead.entries]
        return replayed

    async def purge(self, stream: str, before_id: str | None = None) -> int:
        dead = self._streams.get(stream + DEAD_LETTER_SUFFIX)
        if dead is None:
            return 0
        cut = len(dead.ids) if before_id is None else bisect.bisect_left(dead.ids, parse_id(before_id))
        for entry_id in dead.ids[:cut]:
            del dead.entries[entry_id]
        del dead.ids[:cut]
        return cut

    # -- upkeep and introspection ---------------------------------------------------

    async def trim(self, stream: str, maxlen: int) -> int:
        s = self._streams.get(stream)
        if s is None or len(s.ids) <= maxlen or not s.groups:
            return 0
        drop = min(len(s.ids) - maxlen, bisect.bisect_left(s.ids, _floor(s)))
        if drop <= 0:
            return 0
        for entry_id in s.ids[:drop]:
            del s.entries[entry_id]
        del s.ids[:drop]
        return drop

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        s, g = self._group(stream, group)
        lag = len(s.ids) - bisect.bisect_right(s.ids, g.last_id)
        return GroupInfo(len(s.ids), len(g.pel), lag, format_id(*g.last_id))

    async def read_range(
        self, stream: str, count: int = 100, start_id: str = "0-0"
    ) -> list[tuple[str, dict[str, bytes]]]:
        s = self._streams.get(stream)
        if s is None:
            return []
        start = bisect.bisect_left(s.ids, parse_id(start_id))
        return [(format_id(*i), {k.decode(): v for k, v in s.entries[i].items()}) for i in s.ids[start : start + count]]

    async def length(self, stream: str) -> int:
        s = self._streams.get(stream)
        return len(s.ids) if s is not None else 0
