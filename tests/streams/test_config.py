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


async def test_a_stop_with_a_message_in_hand_fits_the_shutdown_budget() -> None:
    # stop_timeout (10 s by default) is longer than the whole shutdown budget: the listener
    # must give up in time for the services stopped after it (the Recorder is one of them)
    # one slot, held by the slow message: the reader waits for it too
    listener_spec = {"cls": "StreamListener", "settings": {"block_ms": 100, "max_parallel_batches": 1, "batch_size": 1}}
    config = {**CONFIG, "main": {**CONFIG["main"], "shutdown_timeout": 2},
              "services": [*CONFIG["services"][:4], listener_spec, CONFIG["services"][5]]}
    ep = Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        services = ep.app.services
        listener, producer, rec = services["StreamListener"], services["stream_producer"], services["rec"]
        await producer.call("rec.slow", {"value": 1})
        await until(lambda: rec.started_runs == [1], what="the slow one in hand")
    assert listener.state == "stopped" and not listener._batches
    assert rec.stopped, "the shutdown budget ran out before the lower layers were stopped"
    info = await services["streams"].group_info(listener.stream_key, listener.group_name)
    assert info.pending == 1 and rec.values("slow") == []  # left pending, unacknowledged
