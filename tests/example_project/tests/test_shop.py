"""The shop, tested with kaiju's pytest plugin alone (kaiju_app, kaiju_app_options, TestApp)."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from kaiju import rpc
from kaiju.testing import eventually
from shop import Mailer


class FakeMailer(Mailer):
    """Keeps the mail it is asked to send."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sent = []

    async def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))


@pytest.fixture
def kaiju_app_options():
    return {"replace": {"mailer": FakeMailer()}}


async def test_an_order_in_a_session(kaiju_app):
    sessions = kaiju_app.service("sessions")
    session = await sessions.new_session(user_id="ann", scope="user")
    assert await kaiju_app.call("orders.create", {"item": "tea", "qty": 2}, headers={"Session-Id": session.id}) == 1
    assert await kaiju_app.call("orders.create", {"item": "cake"}, headers={"Session-Id": session.id}) == 2
    stored = await sessions.load_session(session.id)
    assert [o["item"] for o in stored.data["orders"]] == ["tea", "cake"]
    assert kaiju_app.service("mailer").sent[0] == ("boss@example.com", "new order: 2 x tea")
    with pytest.raises(rpc.MethodNotFound):
        await kaiju_app.call("orders.create", {"item": "tea"}, scope="guest")


async def test_the_nightly_report_fired_now(kaiju_app):
    assert await kaiju_app.fire("nightly_report") == 1


async def test_the_nightly_report_at_three_in_berlin(kaiju_app):
    task = kaiju_app.service("nightly_report")
    kaiju_app.travel(datetime.datetime(2031, 6, 1, 2, 59, 59, 800000, tzinfo=ZoneInfo("Europe/Berlin")))
    await eventually(lambda: task.runs, what="the 03:00 run, 0.2 s away on the moved clock")
    assert task.runs == 1 and kaiju_app.service("orders").reports == 1


async def test_over_http(kaiju_app):
    async with kaiju_app.http() as client:
        answer = await client.post("/public/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "orders.create", "params": ["x"]})
        assert (await answer.json())["error"]["data"]["type"] == "MethodNotFound"  # guests see no user methods
