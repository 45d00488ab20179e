"""Stream spans: the producer's `send <topic>` and the listener's `process <topic>`.

The producer span writes its context into the message's headers (`traceparent`, ...);
the listener's span for that message is its child, in the other process, and the RPC
calls the message makes are children of that one. Both carry the messaging conventions'
attributes: `messaging.system` (`redis` or `memory`), `messaging.destination.name` (the
stream), `messaging.operation.type`, `messaging.message.id`; the consumer's also
`messaging.consumer.group.name`, `kaiju.stream.deliveries` (this delivery's number) and
`kaiju.stream.outcome`: `acked`, `retried` (left pending for a redelivery) or
`dead_lettered`, an ERROR unless acked.

A listener runs each message on its own (in order, inside its batch), so every process
span has the message's producer span as its parent; none needs a link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kaiju.telemetry.tracing import CONSUMER, PRODUCER, Tracing, failed

__all__ = ["traced_process", "traced_send"]


async def traced_send(
    tracing: Tracing,
    backend: Any,
    topic: str,
    stream: str,
    body: bytes,
    headers: Mapping[str, str] | None,
    key: str | None,
) -> str:
    """`backend.add(stream, body, headers, key)` inside a producer span, its context written
    into (a copy of) `headers`; returns the message id."""
    headers = dict(headers or {})
    span = tracing.start(f"send {topic}", PRODUCER)
    recording = span.is_recording()
    if recording:
        span.set_attributes(
            {
                "messaging.system": backend.messaging_system,
                "messaging.destination.name": stream,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
            }
        )
    with tracing.current(span):
        tracing.inject(headers)
        message_id: str = await backend.add(stream, body, headers, key)
        if recording:
            span.set_attribute("messaging.message.id", message_id)
    return message_id


async def traced_process(
    tracing: Tracing, process: Callable[[Any], Awaitable[Any]], msg: Any, state: Any, topic: str
) -> Any:
    """`process(msg)` (a `Delivery`) inside a consumer span, child of the context the
    message's headers carry."""
    parent = tracing.extract(msg.headers)
    span = tracing.start(f"process {topic}", CONSUMER, parent)
    if span.is_recording():
        span.set_attributes(
            {
                "messaging.system": state.backend.messaging_system,
                "messaging.destination.name": state.stream_key,
                "messaging.consumer.group.name": state.group,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": msg.id,
                "kaiju.stream.deliveries": msg.deliveries,
            }
        )
    with tracing.current(span, parent):
        delivery = await process(msg)
        if span.is_recording():
            span.set_attribute("kaiju.stream.outcome", delivery.outcome)
            if delivery.error is not None:
                error = delivery.error
                data = error.get("data")
                failed(
                    span,
                    data.get("type", "RPCError") if isinstance(data, dict) else "RPCError",
                    error.get("message", ""),
                )
    return delivery
