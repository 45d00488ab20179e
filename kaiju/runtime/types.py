"""Constrained setting types: annotate a setting with one and the config check rejects a bad
value before anything starts, naming its key path (`services[http].settings.port: expected
int <= 65535, got 99999`).

    class Poller(kaiju.Service):
        interval: Positive = 1.0
        port: Port = 8080
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

__all__ = ["NonNegative", "NonNegativeInt", "Port", "Positive", "PositiveInt"]

Positive = Annotated[float, Meta(gt=0)]
"""A number of seconds (or other amount) greater than zero."""
NonNegative = Annotated[float, Meta(ge=0)]
"""A number of seconds (or other amount), zero or more."""
PositiveInt = Annotated[int, Meta(ge=1)]
"""A count of at least one."""
NonNegativeInt = Annotated[int, Meta(ge=0)]
"""A count, zero or more."""
Port = Annotated[int, Meta(ge=0, le=65535)]
"""A TCP port; 0 picks a free one."""
