"""`Streams`: the service above a stream backend that pauses topics and reports on listeners.

    services:
      - cls: MemoryStream       # storage (or RedisStream)
      - cls: MemoryLocks        # optional: topic locks for every process of the env
      - cls: Streams            # service name "streams": streams.lock_topic, ...
      - cls: StreamListener     # attaches to Streams

The backend only stores messages. Pausing a topic (a *topic lock*), the registry of this
process's listeners and the RPC methods `streams.lock_topic`, `streams.unlock_topic`,
`streams.status` and those of the dead letters (`streams.dead`, `streams.replay`,
`streams.purge`) live here, once, whatever the backend.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from msgspec import Meta

from kaiju import keys
from kaiju.locks.base import LockExistsError, Locks, NotLockOwnerError
from kaiju.rpc.errors import InvalidParams
from kaiju.rpc.methods import method
from kaiju.runtime.service import Service
from kaiju.streams.base import DeadLetter, StreamBackend, StreamUnavailable, parse_id, time_id, topic_key

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.streams.listener import StreamListener

__all__ = ["Streams"]


_REPLAY_STEP = 500  # dead letters replayed per script call


def dead_letter_entry(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter as plain (JSON-ready) data: the body as text when it is UTF-8, else base64."""
    record = dead.record
    try:
        body: dict[str, str] = {"body": dead.body.decode()}
    except UnicodeDecodeError:
        body = {"body_base64": base64.b64encode(dead.body).decode()}
    when = record.get("time")
    return {
        "id": dead.id,
        "message_id": dead.message_id,
        "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
        if isinstance(when, int | float)
        else None,
        "error_type": record.get("error_type") or _error_type(record.get("error")),
        "error_message": record.get("error_message") or (record.get("error") or {}).get("message"),
        "deliveries": record.get("deliveries"),
        "listener": record.get("listener"),
        "group": record.get("group"),
        "consumer": record.get("consumer"),
        "correlation_id": record.get("correlation_id"),
        "trace_id": record.get("trace_id"),
        "error": record.get("error"),
        "headers": dead.headers,
        "key": dead.key,
        **body,
    }


def _error_type(error: Any) -> str | None:
    data = error.get("data") if isinstance(error, dict) else None
    return data.get("type") if isinstance(data, dict) else None


def _stream_id(value: str | None) -> str | None:
    """A stream id given by a caller, checked (InvalidParams for anything else)."""
    if value is None:
        return None
    try:
        parse_id(value)
    except ValueError:
        raise InvalidParams(f'Invalid params: expected a stream id "<ms>-<seq>", got {value!r}') from None
    return value


def _unix_time(value: str | float) -> float:
    """Unix seconds from a number or an ISO 8601 time (UTC unless it says); InvalidParams else."""
    if isinstance(value, int | float):
        return float(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParams(
            f"Invalid params: expected unix seconds or an ISO 8601 time, got {value!r}", data={"field": "before"}
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def topic_lock_key(stream: str) -> str:
    """The lock key pausing `stream`, in the env's shared lock namespace: the key names the
    full stream, so it is unique there, and every app consuming the stream sees one lock."""
    return f"{keys.TOPIC_LOCK}.{stream}"


class Streams(Service):
    """Topic locks and the listeners of this process, over one stream backend.

    Depends on a `StreamBackend` (`backend`) and, when there is one, on `Locks` (`locks`): a
    topic lock then pauses every listener of the topic in every process of the env;
    without `Locks` it pauses the listeners of this process only. Listeners register
    themselves (`attach`) while they run.
    """

    service_name: ClassVar[str | None] = "streams"

    backend: StreamBackend
    locks: Locks | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._listeners: list[StreamListener] = []
        self._local_locks: set[str] = set()

    def stream_key(self, topic: str, shared: bool = False) -> str:
        """The stream key of `topic` in this app's namespace (or the shared one)."""
        return topic_key(self.app.shared_namespace if shared else self.app.namespace, topic)

    # -- topic locks -----------------------------------------------------------

    async def topic_locked(self, stream: str) -> bool:
        """Whether `stream` is paused by a topic lock; raises StreamUnavailable when the
        locks service cannot answer."""
        if self.locks is None:
            return stream in self._local_locks
        try:
            return await self.locks.exists(topic_lock_key(stream), shared=True)
        except Exception as exc:  # the lock store is down: the listener backs off as for its own server
            raise StreamUnavailable(f"cannot check the topic lock: {exc!r}") from exc

    async def lock_stream(self, stream: str, ttl: float = 3600.0) -> bool:
        """Pause every listener of `stream` (they finish what they hold) until `unlock_stream`
        or until `ttl` seconds pass; False when it was already locked."""
        if self.locks is None:
            locked = stream not in self._local_locks
            self._local_locks.add(stream)
        else:
            try:
                await self.locks.acquire(topic_lock_key(stream), ttl=ttl, wait=False, renew=False, shared=True)
                locked = True
            except LockExistsError:
                locked = False
        self._recheck(stream)
        return locked

    async def unlock_stream(self, stream: str) -> bool:
        """Resume the listeners of `stream`, whoever locked it; False when it was not locked."""
        if self.locks is None:
            unlocked = stream in self._local_locks
            self._local_locks.discard(stream)
        else:
            key, unlocked = topic_lock_key(stream), False
            owner = await self.locks.owner(key, shared=True)
            if owner is not None:
                try:
                    await self.locks.release(key, owner, shared=True)
                    unlocked = True
                except NotLockOwnerError:
                    pass  # expired or released meanwhile
        self._recheck(stream)
        return unlocked

    def _recheck(self, stream: str) -> None:
        # the listeners of this process learn at once; those of others at their next lock check
        for listener in self._listeners:
            if listener.stream_key == stream:
                listener.recheck_lock()

    # -- RPC ---------------------------------------------------------------------

    @method
    async def lock_topic(self, topic: str, shared: bool = False, ttl: Annotated[float, Meta(gt=0)] = 3600.0) -> bool:
        """Pause `topic` for every listener of this app (or of the env with `shared`) until
        `unlock_topic`, at most `ttl` seconds (a positive number). Returns False when it was
        already locked."""
        return await self.lock_stream(self.stream_key(topic, shared), ttl)

    @method
    async def unlock_topic(self, topic: str, shared: bool = False) -> bool:
        """Resume `topic`; returns False when it was not locked."""
        return await self.unlock_stream(self.stream_key(topic, shared))

    @method
    async def status(self) -> list[dict[str, Any]]:
        """One entry per listener of this process: topic, pending, lag, processed, failed, dead-lettered."""
        return [await listener.status() for listener in self._listeners]

    # -- dead letters --------------------------------------------------------------

    @method
    async def dead(
        self,
        topic: str,
        shared: bool = False,
        count: Annotated[int, Meta(ge=1, le=10_000)] = 100,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """The dead letters of `topic`, oldest first (at most `count`, with ids above `after`):
        each with its id, the original message (id, headers, body) and why it died (error type
        and message, deliveries, time, listener, correlation and trace ids)."""
        stream = self.stream_key(topic, shared)
        return [dead_letter_entry(d) for d in await self.backend.dead_letters(stream, count, _stream_id(after))]

    @method
    async def replay(
        self, topic: str, ids: list[str] | None = None, all: bool = False, shared: bool = False
    ) -> dict[str, Any]:
        """Put dead letters of `topic` back on it as new messages, each once however many replay
        it at once: those with `ids`, or with `all` every one there now. Returns the new
        message ids (`replayed`); an id that is no dead letter is passed over."""
        if (ids is None) == (not all):
            raise InvalidParams("Invalid params: give exactly one of ids and all: true", data={"field": "ids"})
        stream = self.stream_key(topic, shared)
        if ids is None:  # those there now, not those dead-lettered again while replaying
            ids = await self._dead_ids(stream)
        replayed: list[str] = []
        for start in range(0, len(ids), _REPLAY_STEP):
            replayed += await self.backend.replay(stream, ids[start : start + _REPLAY_STEP])
        self.logger.info("dead letters replayed", stream=stream, count=len(replayed))
        return {"replayed": replayed}

    async def _dead_ids(self, stream: str) -> list[str]:
        ids: list[str] = []
        while True:
            page = await self.backend.dead_letters(stream, _REPLAY_STEP, ids[-1] if ids else None)
            ids += [d.id for d in page]
            if len(page) < _REPLAY_STEP:
                return ids

    @method
    async def purge(self, topic: str, before: str | float | None = None, shared: bool = False) -> int:
        """Drop the dead letters of `topic` written before `before` (unix seconds or an ISO 8601
        time; none: all of them); returns how many were dropped."""
        stream = self.stream_key(topic, shared)
        dropped = await self.backend.purge(stream, None if before is None else time_id(_unix_time(before)))
        self.logger.info("dead letters purged", stream=stream, count=dropped)
        return dropped

    # -- listeners of this process ------------------------------------------

    def attach(self, listener: StreamListener) -> None:
        """Register a running listener (for `status` and immediate topic-lock checks)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def detach(self, listener: StreamListener) -> None:
        """Forget a listener that stopped."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def listeners(self) -> tuple[StreamListener, ...]:
        """The listeners running on this service, in the order they started."""
        return tuple(self._listeners)
