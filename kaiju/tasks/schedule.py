"""When a task fires next: pure functions over Unix timestamps, no event loop.

Cron specs are read by croniter: 5 fields (minute hour day month weekday) or 6, the
sixth being seconds (`"* * * * * *"` fires every second, `"0 * * * * 30"` at second 30
of every hour), or one of croniter's macros (`@daily`, `@hourly`, ...). A spec is matched
against the wall clock of an IANA time zone.

Daylight-saving time, for a zone that has it:

- a local time that does not exist (the hour skipped in spring) fires at the instant
  the clocks jump, once: `30 2 * * *` in Europe/Berlin fires at 03:00 CEST that day;
- a local time that occurs twice (the hour repeated in autumn) fires once, at its first
  occurrence, unless the spec's hour field matches every hour (`*`): such a task keeps
  firing on real time through the repeated hour, as it does through any other.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from kaiju.runtime.service import SettingError
from kaiju.runtime.types import CRON_MACROS

__all__ = [
    "CronSchedule",
    "missed_fires",
    "with_jitter",
    "next_periodic_fire",
    "parse_timezone",
]

UTC = UTC
# No zone has ever moved its clocks by more than this at once; enough to see a whole repeated hour.
_MAX_SHIFT = timedelta(hours=3)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone called `name` (e.g. "Europe/Berlin", "UTC"); raises SettingError if unknown."""
    if not isinstance(name, str) or not name:
        raise SettingError("timezone", f'expected an IANA zone name such as "Europe/Berlin", got {name!r}')
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SettingError("timezone", f'unknown IANA time zone "{name}"') from None


def next_periodic_fire(anchor: float, interval: float, after: float) -> float:
    """The first time `anchor + k * interval` (k >= 0 an integer) that is later than `after`.

    Raises SettingError when `interval` is not a positive number.
    """
    if not interval > 0:
        raise SettingError("interval", f"expected a positive number of seconds, got {interval!r}")
    if after < anchor:
        return anchor
    k = math.floor((after - anchor) / interval) + 1
    fire = anchor + k * interval
    # floating point may land a hair short of `after`
    while fire <= after:
        k += 1
        fire = anchor + k * interval
    return fire


def missed_fires(
    next_fire: Callable[[float], float], last_fire: float, until: float, misfire: str, grace: float, limit: int
) -> list[float]:
    """The fires of a schedule (`next_fire(fire)`: the one after `fire`) after `last_fire` and
    before `until` to run: those late by at most `grace` seconds, and before them none
    (`misfire` "skip"), the latest ("once") or each of the latest `limit` ("all")."""
    missed: list[float] = []
    fire = next_fire(last_fire)
    while fire < until:
        missed.append(fire)
        if len(missed) > 10 * limit:  # a long outage of a frequent task: keep the latest
            del missed[:limit]
        fire = next_fire(fire)
    late = [f for f in missed if until - f <= grace]
    older = missed[: len(missed) - len(late)]
    if misfire == "once":
        return older[-1:] + late
    if misfire == "all":
        return older[-limit:] + late
    return late


def with_jitter(fire: float, jitter: float, rng: random.Random | None = None) -> float:
    """`fire` moved later by a uniform random amount in [0, jitter] seconds."""
    if jitter <= 0:
        return fire
    return fire + (rng or random).uniform(0, jitter)


class CronSchedule:
    """A cron spec in a time zone; `next_fire(after)` gives the next fire time.

    Raises SettingError at construction for a spec croniter cannot read or an unknown zone.
    """

    __slots__ = ("spec", "tz", "timezone", "_every_hour")

    def __init__(self, spec: str, timezone: str = "UTC"):
        macro = isinstance(spec, str) and spec.strip().lower() in CRON_MACROS
        if not isinstance(spec, str) or (not macro and len(spec.split()) not in (5, 6)):
            raise SettingError(
                "cron",
                f"expected 5 fields (minute hour day month weekday), 6 (the sixth is seconds) or a macro"
                f" ({', '.join(CRON_MACROS)}), got {spec!r}",
            )
        if macro:
            spec = spec.strip().lower()
        try:
            expanded = croniter(spec).expanded
            croniter(spec).get_next(float)  # one that never fires (Feb 31) raises here, not at start
        except Exception as exc:  # croniter raises several types for bad specs
            raise SettingError("cron", f"invalid spec {spec!r}: {exc}") from None
        self.spec = spec
        self.timezone = timezone
        self.tz = parse_timezone(timezone)
        hours = expanded[1]
        self._every_hour = hours == ["*"] or set(hours) >= set(range(24))

    def __repr__(self) -> str:
        return f"CronSchedule({self.spec!r}, {self.timezone!r})"

    def next_fire(self, after: float) -> float:
        """The first fire time (a Unix timestamp) later than `after` (a Unix timestamp)."""
        wall = datetime.fromtimestamp(after, self.tz).replace(tzinfo=None, fold=0)
        best = self._next_monotonic(after, wall)
        if self._every_hour:
            # A repeated hour's second pass is not in wall-clock order; look at it apart.
            repeated = self._next_in_repeated_hour(after, best)
            if repeated is not None and repeated < best:
                best = repeated
        return best

    # -- internals -----------------------------------------------------

    def _candidates(self, start: datetime):
        """Naive local wall times matching the spec, later than `start`, in order."""
        it = croniter(self.spec, start)
        while True:
            yield it.get_next(datetime)

    def _instant(self, wall: datetime) -> float:
        """The instant of a naive local time: its first occurrence, or the clock jump for a skipped time."""
        first = wall.replace(tzinfo=self.tz, fold=0)
        ts = first.timestamp()
        if datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None) == wall:
            return ts
        # `wall` falls in a gap: fold=1 reads it with the offset after the jump, giving an instant
        # before the jump; the jump lies between the two readings.
        return _transition(self.tz, wall.replace(tzinfo=self.tz, fold=1).timestamp(), ts)

    def _next_monotonic(self, after: float, wall: datetime) -> float:
        # Candidates earlier than the wall time of `after` map to instants not later than it,
        # except in a repeated hour, handled by the caller; a skipped hour may map several
        # candidates onto one instant, so keep going until one is later than `after`.
        start = wall - timedelta(microseconds=1)
        for candidate in self._candidates(start):
            ts = self._instant(candidate)
            if ts > after:
                return ts
        raise AssertionError("unreachable")  # pragma: no cover -- croniter never stops

    def _next_in_repeated_hour(self, after: float, limit: float) -> float | None:
        """The first fire later than `after` in the second pass of a repeated hour before `limit`."""
        lo = after - _MAX_SHIFT.total_seconds()
        off_lo = _offset(self.tz, lo)
        off_hi = _offset(self.tz, limit)
        if off_hi >= off_lo:
            return None
        jump = _transition(self.tz, lo, limit)  # the instant the clocks go back
        width = off_lo - off_hi
        if after >= jump + width:
            return None
        # during the second pass, the instant `jump + d` reads as wall time `fold_start + d`
        fold_start = datetime.fromtimestamp(jump, self.tz).replace(tzinfo=None, fold=0)
        first_wall = fold_start + timedelta(seconds=max(0.0, after - jump))
        for candidate in self._candidates(first_wall - timedelta(microseconds=1)):
            ts = jump + (candidate - fold_start).total_seconds()
            if ts >= jump + width or ts >= limit:
                return None
            if ts > after:
                return ts
        return None  # pragma: no cover


def _offset(tz: ZoneInfo, ts: float) -> float:
    return datetime.fromtimestamp(ts, tz).utcoffset().total_seconds()  # type: ignore[union-attr]


def _transition(tz: ZoneInfo, lo: float, hi: float) -> float:
    """The first instant in (lo, hi] whose UTC offset differs from that at `lo` (to a millisecond)."""
    off = _offset(tz, lo)
    while hi - lo > 0.001:
        mid = (lo + hi) / 2
        if _offset(tz, mid) == off:
            lo = mid
        else:
            hi = mid
    # zone transitions fall on whole seconds
    whole = math.floor(hi)
    return float(whole) if whole > lo and _offset(tz, whole) != off else hi
