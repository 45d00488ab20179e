"""A rate limit as the config gives it, and the GCRA step, pure.

GCRA keeps one number per subject, the *theoretical arrival time* (TAT): when the subject's
calls would have arrived had they come evenly, one every `interval` seconds. A call at
`now` is allowed when the TAT is at most `tolerance` ahead of `now` (the burst), and pushes
the TAT one `interval` on; a refused call changes nothing and learns how long to wait.

    interval  = period / count          "100/minute": 0.6 s
    tolerance = interval * (burst - 1)  burst calls may come at once, then one per interval
"""

from __future__ import annotations

import math
import re
from typing import Literal

import msgspec

from kaiju.runtime.types import CheckedStr, PositiveInt

__all__ = ["PERIODS", "Rate", "RateLimit", "gcra"]

PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


class Rate(CheckedStr):
    """`"<count>/<period>"`: calls per period, the period a unit (second, minute, hour, day;
    s, m, h, d) with an optional number before it: `"100/minute"`, `"5/30s"`, `"1/2h"`."""

    expected = 'a rate "<count>/<period>" such as "100/minute" or "5/30s" (second, minute, hour, day)'

    @classmethod
    def valid(cls, value: str) -> bool:
        try:
            cls.parts(value)
        except ValueError:
            return False
        return True

    @staticmethod
    def parts(value: str) -> tuple[int, float]:
        """`(count, period in seconds)`; ValueError for anything else."""
        found = _RATE.match(value.lower())
        if found is None:
            raise ValueError(value)
        count, amount, unit = int(found[1]), float(found[2] or 1), found[3]
        unit = _ALIASES.get(unit, unit.rstrip("s") if unit.endswith("s") and unit[:-1] in PERIODS else unit)
        if unit not in PERIODS or count < 1 or amount <= 0:
            raise ValueError(value)
        return count, amount * PERIODS[unit]


class RateLimit(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One rate limit: calls of the methods matching `methods`, counted `per` subject."""

    methods: str
    """The methods limited: a shell-style pattern of RPC names ("shop.*", "auth.login")."""
    rate: Rate
    """Calls allowed per period: "100/minute", "5/30s", "10/second"."""
    per: Literal["user", "session", "ip", "global"] = "ip"
    """Whom the calls are counted for: the session's user, the session, the caller's address
    (`ctx.client`), or everyone at once. A caller without a session counts by address."""
    burst: PositiveInt | None = None
    """Calls allowed at once before the rate applies (default: the rate's count)."""

    @property
    def interval(self) -> float:
        """Seconds between calls at the sustained rate."""
        count, period = Rate.parts(self.rate)
        return period / count

    @property
    def tolerance(self) -> float:
        """Seconds the TAT may run ahead of the clock: room for `burst` calls at once."""
        count, _ = Rate.parts(self.rate)
        return self.interval * ((self.burst or count) - 1)


def gcra(tat: float, now: float, interval: float, tolerance: float) -> tuple[float, float]:
    """One call at `now` against `tat`: `(new tat, 0.0)` when allowed, else `(tat, seconds to
    wait)` (more than 0). A TAT in the past counts from `now`."""
    if tat < now:
        tat = now
    wait = tat - now - tolerance
    if wait > 1e-9:
        return tat, wait if wait > 0.001 else 0.001
    return tat + interval, 0.0


def retry_after(seconds: float) -> int:
    """Seconds for an HTTP `Retry-After` header: whole, rounded up, at least 1."""
    return max(1, math.ceil(seconds))
