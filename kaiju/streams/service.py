"""`Streams`: the service above a stream backend that pauses topics and reports on listeners.

    services:
      - cls: MemoryStream       # storage (or RedisStream)
      - cls: MemoryLocks        # optional: topic locks for every process of the env
      - cls: Streams            # service name "streams": streams.lock_topic, ...
      - cls: StreamListener     # attaches to Streams

The backend only stores messages. Pausing a topic (a *topic lock*), the registry of this
process's listeners and the RPC methods `streams.lock_topic`, `streams.unlock_topic` and
`streams.status` live here, once, whatever the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from msgspec import Meta

from kaiju import keys
from kaiju.locks.base import LockExistsError, Locks, NotLockOwnerError
from kaiju.rpc.methods import method
from kaiju.runtime.service import Service
from kaiju.streams.base import StreamBackend, StreamUnavailable, topic_key

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.streams.listener import StreamListener

__all__ = ["Streams"]


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
