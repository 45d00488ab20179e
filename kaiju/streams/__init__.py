"""Streams: RPC requests carried by a message log, run at least once.

    from kaiju.streams import MemoryStream, RedisStream, StreamListener, StreamProducer, Streams

- `StreamBackend` (`kaiju.streams.base`): storage, with `MemoryStream` (one process) and
  `RedisStream` (Redis Streams consumer groups);
- `Streams` (`kaiju.streams.service`): the service above a backend: topic locks, the
  listeners of the process, the `streams.*` RPC methods;
- `StreamListener`: a topic's messages into `RPCServer`; `StreamProducer`: requests into a topic.

Names are imported lazily: importing this package (or naming `RedisStream`) loads no
Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.streams.base import (
        GroupInfo,
        GroupMissing,
        StreamBackend,
        StreamError,
        StreamMessage,
        StreamUnavailable,
        topic_key,
    )
    from kaiju.streams.listener import StreamListener
    from kaiju.streams.memory import MemoryStream
    from kaiju.streams.producer import StreamProducer
    from kaiju.streams.redis import RedisStream
    from kaiju.streams.service import Streams

__getattr__ = _front_door(__name__, __file__, globals())
