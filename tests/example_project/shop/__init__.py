"""A small shop app: orders for logged-in users, a mailer, a nightly report."""

from shop.services import Mailer, Orders

__all__ = ["Mailer", "Orders"]
