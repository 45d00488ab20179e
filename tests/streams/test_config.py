"""The streams from a config, through the real entrypoint (the shape of conf/example.yml)."""

from __future__ import annotations

from kaiju.runtime.entrypoint import Entrypoint
from tests.streams.helpers import until

CONFIG = {
    "main": {"name": "example", "env": "dev", "shutdown_timeout": 5},
    "packages": ["tests.streams.helpers"],
    "services": [
        {"cls": "RPCServer"},
        {"cls": "MemoryLocks"},
        {"cls": "MemoryStream"},
        {"cls": "Recorder"},
        {"cls": "StreamListener", "settings": {"topic": "rpc", "max_deliveries": 5, "maxlen": 10000, "block_ms": 100}},
        {"cls": "StreamProducer"},
    ],
}


async def test_a_config_with_memory_streams_runs_requests() -> None:
    ep = Entrypoint(config=CONFIG, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        services = ep.app.services
        listener, producer, rec = services["StreamListener"], services["stream_producer"], services["rec"]
        assert listener.streams is services["streams"] and services["streams"].locks is services["locks"]
        await producer.call("rec.echo", {"value": "hi"})
        await until(lambda: rec.values() == ["hi"], what="the request through the topic")
        (status,) = await services["rpc"].call("streams.status")
        assert status["stream"] == "dev.example._stream.rpc" and status["group"] == "example"
