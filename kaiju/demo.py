"""A small service for the example app in conf/example.yml."""

from __future__ import annotations

from kaiju.runtime.service import Service

__all__ = ["DemoService"]


class DemoService(Service):
    """Greets and echoes; counts what it was asked."""

    service_name = "demo"

    greeting: str = "hello"

    async def start(self) -> None:
        self.calls = 0
        self.logger.info("demo service ready", greeting=self.greeting)

    async def stop(self, exception: Exception | None = None) -> None:
        self.logger.info("demo service stopped", calls=self.calls)

    async def hello(self, name: str = "world") -> str:
        """Return the greeting for `name`."""
        self.calls += 1
        return f"{self.greeting}, {name}"

    async def echo(self, data: object = None) -> object:
        """Return `data` unchanged."""
        self.calls += 1
        return data
