"""Events in one process: encoding once, topics checked, notices heard, app.publish."""

from __future__ import annotations

import msgspec
import pytest

from kaiju.events.base import EventListener, Events
from kaiju.runtime.service import App
from kaiju.testing.services import started


class Heard(EventListener):
    def __init__(self) -> None:
        self.events: list = []
        self.revocations: list = []

    def deliver(self, topic: str, notification: bytes) -> None:
        self.events.append((topic, msgspec.json.decode(notification)))

    def revoked(self, kind: str, value: str) -> None:
        self.revocations.append((kind, value))


async def test_publish_reaches_every_listener_as_a_notification():
    heard, events = Heard(), Events()
    async with started(events) as app:
        stop = events.add_listener(heard)
        await app.publish("orders.created", {"id": 7})
        await events.revoke("session", "abc")
        stop()
        await app.publish("orders.created", {"id": 8})
    assert heard.events == [("orders.created", {"jsonrpc": "2.0", "method": "orders.created", "params": {"id": 7}})]
    assert heard.revocations == [("session", "abc")]


@pytest.mark.parametrize("topic", ["", "a b", "news.*", "x" * 257, "line\nbreak"])
async def test_a_topic_that_cannot_be_published_is_refused(topic):
    async with started(Events()) as app:
        with pytest.raises(ValueError, match="topic"):
            await app.publish(topic, 1)


async def test_oversized_and_unencodable_events_are_refused():
    async with started(Events(max_event_size=100)) as app:
        with pytest.raises(ValueError, match="max_event_size"):
            await app.publish("big", "x" * 200)
        with pytest.raises(TypeError):
            await app.publish("odd", object())
        with pytest.raises(ValueError, match="kind"):
            await app.events.revoke("everything", "x")


async def test_publishing_without_an_events_service_says_what_to_add():
    with pytest.raises(RuntimeError, match="cls: Events"):
        await App().publish("news", 1)
