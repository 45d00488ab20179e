"""The streams from a config, through the real entrypoint (the shape of conf/example.yml)."""

from __future__ import annotations

import pytest

from kaiju.config.errors import ConfigError
from kaiju.config.loader import load_config_data
from kaiju.rpc.errors import MethodNotFound
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.plan import build_plan
from tests.streams.helpers import until

CONFIG = {
    "main": {"name": "example", "env": "dev", "shutdown_timeout": 5},
    "packages": ["tests.streams.helpers"],
    "services": [
        {"cls": "RPCServer"},
        {"cls": "MemoryLocks"},
        {"cls": "MemoryStream"},
        {"cls": "Streams"},
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
        streams = services["streams"]
        assert listener.streams is streams and streams.locks is services["locks"]
        assert streams.backend is services["stream_backend"] is producer.backend
        await producer.call("rec.echo", {"value": "hi"})
        await until(lambda: rec.values() == ["hi"], what="the request through the topic")
        (status,) = await services["rpc"].call("streams.status")
        assert status["stream"] == "{dev.example._stream.rpc}" and status["group"] == "example"


async def test_a_stop_with_a_message_in_hand_fits_the_shutdown_budget() -> None:
    # stop_timeout (10 s by default) is longer than the whole shutdown budget: the listener
    # must give up in time for the services stopped after it (the Recorder is one of them)
    # one slot, held by the slow message: the reader waits for it too
    listener_spec = {"cls": "StreamListener", "settings": {"block_ms": 100, "max_parallel_batches": 1, "batch_size": 1}}
    config = {**CONFIG, "main": {**CONFIG["main"], "shutdown_timeout": 2},
              "services": [*CONFIG["services"][:5], listener_spec, CONFIG["services"][6]]}
    ep = Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        services = ep.app.services
        listener, producer, rec = services["StreamListener"], services["stream_producer"], services["rec"]
        await producer.call("rec.slow", {"value": 1})
        await until(lambda: rec.started_runs == [1], what="the slow one in hand")
    assert listener.state == "stopped" and listener.active is None and not listener.in_hand
    assert rec.stopped, "the shutdown budget ran out before the lower layers were stopped"
    info = await services["stream_backend"].group_info(listener.stream_key, listener.group_name)
    assert info.pending == 1 and rec.values("slow") == []  # left pending, unacknowledged


def test_a_listener_without_the_streams_service_is_refused_before_start() -> None:
    config = {**CONFIG, "services": [entry for entry in CONFIG["services"] if entry["cls"] != "Streams"]}
    with pytest.raises(ConfigError) as caught:
        build_plan(load_config_data(config, source="app.yml", os_env=False))
    assert "StreamListener needs a Streams service (streams)" in str(caught.value)


async def test_the_backend_is_storage_only() -> None:
    # the streams.* methods answer from the Streams service; the backend has no RPC method
    ep = Entrypoint(config=CONFIG, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        server = ep.app.services["rpc"]
        assert await server.call("streams.lock_topic", {"topic": "rpc"}) is True
        with pytest.raises(MethodNotFound):
            await server.call("stream_backend.status")


async def test_without_locks_a_topic_lock_pauses_the_listeners_of_this_process() -> None:
    config = {**CONFIG, "services": [entry for entry in CONFIG["services"] if entry["cls"] != "MemoryLocks"]}
    ep = Entrypoint(config=config, catch_signals=(), log_config=False, os_env=False)
    async with ep:
        services = ep.app.services
        streams, listener, rec = services["streams"], services["StreamListener"], services["rec"]
        assert streams.locks is None and streams.listeners == (listener,)
        assert await streams.lock_topic("rpc") is True and await streams.lock_topic("rpc") is False
        await until(lambda: listener.state == "paused", what="paused by the process-local lock")
        await services["stream_producer"].call("rec.echo", {"value": "held"})
        assert await streams.topic_locked(listener.stream_key) and rec.values() == []
        assert await streams.unlock_topic("rpc") is True and await streams.unlock_topic("rpc") is False
        await until(lambda: rec.values() == ["held"], what="the held message after unlock")
    assert streams.listeners == ()  # a stopped listener detaches
