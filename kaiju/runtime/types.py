"""Constrained setting types: annotate a setting with one and the config check rejects a bad
value before anything starts, naming its key path (`services[http].settings.port: expected
int <= 65535, got 99999`).

    class Poller(kaiju.Service):
        interval: Positive = 1.0
        port: Port = 8080
        url: RedisURL = "redis://127.0.0.1:6379/0"

Numbers carry msgspec constraints (`Annotated[float, Meta(gt=0)]`). Strings with a grammar
(scope names, Redis URLs, cron specs, time zones, RPC method names) are `CheckedStr`
subclasses: msgspec hands them to `check_hook`, which calls their `parse`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from msgspec import Meta

__all__ = [
    "CRON_MACROS",
    "SCOPE_NAMES",
    "CheckedStr",
    "CronSpec",
    "NonNegative",
    "NonNegativeInt",
    "Port",
    "Positive",
    "PositiveInt",
    "RPCMethodName",
    "RedisURL",
    "ScopeName",
    "TimeZone",
    "check_hook",
]

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

# the names of kaiju.rpc.access.Scope, lowest floor first (tests keep the two in step)
SCOPE_NAMES = ("system", "admin", "user", "guest")


def _shown(value: Any) -> str:
    if value is None:
        return "null"  # as the config file spells it (and msgspec's own messages say)
    return f'"{value}"' if isinstance(value, str) else repr(value)


class CheckedStr(str):
    """A string setting with a grammar: `parse` returns the value or raises ValueError saying
    what was expected (`expected ..., got "..."`). A subclass sets `expected` and `valid`."""

    expected = "a string"

    @classmethod
    def valid(cls, value: str) -> bool:
        """Whether `value` (a str) follows the grammar."""
        return True

    @classmethod
    def problem(cls, value: str) -> str | None:
        """What is wrong with `value` (a str): None when it is valid, else a reason ("" when
        `expected` says it all). Subclasses with more to say than `valid` override it."""
        return None if cls.valid(value) else ""

    @classmethod
    def parse(cls, value: Any) -> CheckedStr:
        """`value` as an instance of `cls`; raises ValueError naming what was expected (and why
        the value is not that, when the type can say)."""
        why = cls.problem(value) if isinstance(value, str) else ""
        if why is not None:
            raise ValueError(f"expected {cls.expected}, got {cls.show(value)}" + (f" ({why})" if why else ""))
        return cls(value)

    @classmethod
    def show(cls, value: Any) -> str:
        """`value` as an error message shows it (a subclass hides secrets)."""
        return _shown(value)


class ScopeName(CheckedStr):
    """The name of an RPC scope, any case: system, admin, user or guest."""

    expected = "one of " + ", ".join(SCOPE_NAMES)

    @classmethod
    def valid(cls, value: str) -> bool:
        return value.strip().lower() in SCOPE_NAMES


class RedisURL(CheckedStr):
    """`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS, `unix:///path` for a socket."""

    expected = (
        'a Redis URL "redis://host:port/db" (or rediss://, unix:///path) with a port up to 65535 and a numeric db'
    )

    @classmethod
    def valid(cls, value: str) -> bool:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 -- raises ValueError for a port out of range
        except ValueError:
            return False
        dbs = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "db"]
        if any(not (v.isascii() and v.isdigit()) for v in dbs):
            return False  # ?db=x: redis-py would fail at connect time, reported as "no answer"
        if parts.scheme == "unix":
            return bool(parts.path)
        db = parts.path.strip("/")
        # the db is a number (redis-py would fail at connect time, reported as "no answer")
        return (
            parts.scheme in ("redis", "rediss") and bool(parts.hostname) and (not db or (db.isascii() and db.isdigit()))
        )

    @classmethod
    def show(cls, value: Any) -> str:
        if not isinstance(value, str):
            return _shown(value)
        try:
            parts = urlsplit(value)
            if parts.password is not None:
                value = value.replace(f":{parts.password}@", ":***@", 1)
        except ValueError:
            pass
        return _shown(value)


CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class CronSpec(CheckedStr):
    """A cron spec as croniter reads it: 5 fields, 6 with seconds last, or a macro such as
    `@daily`; one that never fires (`0 3 31 2 *`) is refused."""

    expected = (
        f"a cron spec of 5 fields (minute hour day month weekday), 6 (seconds last) or one of {', '.join(CRON_MACROS)}"
    )

    @classmethod
    def problem(cls, value: str) -> str | None:
        from croniter import (
            CroniterBadDateError,
            croniter,  # only configs with a cron spec need it
        )

        if value.strip().lower() in CRON_MACROS:
            return None
        if len(value.split()) not in (5, 6):
            return ""
        try:
            croniter(value).get_next(float)
        except CroniterBadDateError:
            return None  # well formed: `parse` says it never fires
        except Exception:  # croniter's several error types; find the field at fault
            return _bad_cron_field(value.split())
        return None

    @classmethod
    def parse(cls, value: Any) -> CheckedStr:
        spec = super().parse(value)
        if spec.strip().lower() not in CRON_MACROS and not _fires(spec):
            raise ValueError(
                f"expected a cron spec that fires, got {cls.show(value)}: no date matches all of its fields"
            )
        return spec


def _fires(spec: str) -> bool:
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(spec).get_next(float)
    except CroniterBadDateError:
        return False
    return True


_CRON_FIELDS = ("minute", "hour", "day", "month", "weekday", "second")


def _bad_cron_field(fields: list[str]) -> str:
    """Which field of a cron spec croniter refuses, and croniter's reason."""
    from croniter import croniter

    for index, field in enumerate(fields):
        alone = " ".join(field if n == index else "*" for n in range(len(fields)))
        try:
            croniter(alone)
        except Exception as exc:
            reason = str(exc).replace(f"[{alone}] ", "").strip() or "not valid"
            return f"the {_CRON_FIELDS[index]} field {field!r}: {reason}"
    return "croniter cannot read it"


class TimeZone(CheckedStr):
    """An IANA time zone name, such as "Europe/Berlin" or "UTC"."""

    expected = 'an IANA time zone such as "Europe/Berlin"'

    @classmethod
    def valid(cls, value: str) -> bool:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:  # ZoneInfoNotFoundError, ValueError, OSError for odd names
            return False
        return True


class RPCMethodName(CheckedStr):
    """An RPC method name, `service.method`."""

    expected = 'an RPC method name "service.method"'

    @classmethod
    def valid(cls, value: str) -> bool:
        service, dot, name = value.partition(".")
        return bool(service and dot and name) and not any(c.isspace() for c in value)


def check_hook(type_: type, value: Any) -> Any:
    """msgspec's `dec_hook` for the `CheckedStr` types: `msgspec.convert(data, T, dec_hook=check_hook)`."""
    if isinstance(type_, type) and issubclass(type_, CheckedStr):
        return type_.parse(value)
    raise NotImplementedError(f"no decoder for {type_!r}")
