"""The shop's services."""

from __future__ import annotations

import kaiju
from kaiju import rpc


class Mailer(kaiju.Service):
    """Sends mail (here: pretends to; tests replace it)."""

    service_name = "mailer"

    async def send(self, to: str, text: str) -> None:
        raise RuntimeError("no mail server in this example")


class Orders(kaiju.Service):
    """Orders of logged-in users, kept in their session; a nightly report."""

    service_name = "orders"
    mailer: Mailer
    report_to: str = "boss@example.com"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reports = 0

    @rpc.method(permission=rpc.Scope.USER)
    async def create(self, item: str, qty: int = 1) -> int:
        """Add an order to the caller's session; returns how many the session holds."""
        orders = rpc.current().session.data.setdefault("orders", [])
        orders.append({"item": item, "qty": qty})
        await self.mailer.send(self.report_to, f"new order: {qty} x {item}")
        return len(orders)

    @rpc.method
    async def nightly(self) -> int:
        """The nightly report (run by the cron task)."""
        self.reports += 1
        return self.reports
