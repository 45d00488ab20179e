"""Streams: RPC requests carried by a message log, run at least once.

- `kaiju.streams.base`: the backend interface (`StreamBackend`), `StreamMessage`, `topic_key`;
- `kaiju.streams.memory`: `MemoryStream`, one process;
- `kaiju.streams.redis`: `RedisStream`, Redis Streams consumer groups;
- `kaiju.streams.listener`: `StreamListener`, a topic's messages into `RPCServer`;
- `kaiju.streams.producer`: `StreamProducer`, requests into a topic;
- `kaiju.streams.dispatch`: pure helpers between a message and the dispatcher.

Nothing is imported here, so `import kaiju.streams` needs no Redis client.
"""
