"""Poison messages, on both backends: a message the dispatcher cannot even read (invalid
UTF-8, nesting deeper than the decoder goes, numbers out of range) is dead-lettered on its
first delivery with the client error it earned, without a traceback, and the messages
behind it still run."""

from __future__ import annotations

import logging

import msgspec
import pytest

from kaiju.runtime.service import App
from kaiju.testing.services import started
from tests.streams.helpers import until

APP = dict(name="test", env="test")
DEEP = b"[" * 1000 + b"]" * 1000

POISON = [
    (b'{"jsonrpc":"2.0","method":"rec.echo","params":{"value":"\xff\xfe"}}', -32700),  # not JSON: a parse error
    (b'{"jsonrpc":"2.0","method":"rec.e\xffcho","params":{"value":1}}', -32700),
    (b'{"jsonrpc":"2.0","id":4,"method":"rec.echo","params":{"value":"\xc3("}}', -32700),
    (b'{"jsonrpc":"2.0","method":"rec.echo","params":' + DEEP + b"}", -32602),
    (b'{"jsonrpc":"2.0","id":5,"method":"rec.echo","params":{"value":1},"x":' + DEEP + b"}", -32700),
    (b'{"jsonrpc":"2.0","method":"rec.echo","params":{"value":1e400}}', -32602),
    (b"[" + DEEP + b"]", -32700),
    (b'[{"jsonrpc":"2.0","method":"rec.echo","params":{"value":"\xff"}}]', -32700),
]


@pytest.mark.parametrize("body, code", POISON, ids=range(len(POISON)))
async def test_an_unreadable_message_is_dead_lettered_on_its_first_delivery(make_stack, caplog, body, code) -> None:
    services, backend, (listener,), producer, rec = make_stack(max_deliveries=3, claim_idle_ms=100)
    with caplog.at_level(logging.INFO):
        async with started(*services, app=App(**APP)):
            await producer.write(body)
            await producer.call("rec.echo", {"value": "after"})
            await until(lambda: listener.counters["dead_lettered"] == 1 and rec.values() == ["after"], what="poison out")
            ((_, fields),) = await backend.read_range(listener.stream_key + ".dead")
            info = msgspec.json.decode(fields["x"])
            assert info["deliveries"] == 1 and info["error"]["code"] == code, info
            assert fields["b"] == body  # the message as it was written
            assert listener.counters["failed"] == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize(
    "fields",
    [
        {b"b": b"{}", b"h": b'{"Correlation-Id":"c"}'},
        {b"b": b"{}", b"h": b"not json"},
        {b"b": b"{}", b"h": b'{"n":1}'},
        {b"b": b"{}", b"h": b""},
        {b"b": b"{}", b"k": b"key"},
        {b"h": b'{"a":"b"}', b"k": b"key"},
        {b"b": b"{}", b"h": b'{"a":"b"}', b"k": b"key"},
        {b"b": b"{}"},
        {},
    ],
)
def test_a_read_is_decoded_as_each_entry_alone(fields: dict[bytes, bytes]) -> None:
    from kaiju.streams.base import decode_fields, decode_new

    assert decode_new([(b"1-1", fields), (b"1-2", fields)]) == [decode_fields("1-1", fields), decode_fields("1-2", fields)]
