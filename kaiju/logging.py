"""Logging: a logger that takes keyword extras, and the request context on every record.

Nothing here changes the logging module on import; `configure()` is called by the
entrypoint when it starts.

Request context reaches records through *context providers*: zero-argument callables
returning the fields for the record being logged now (or None). A service offers one
with a `log_fields()` method returning its provider; the entrypoint collects them from
the services it started (`log_field_providers`) and adds them to the filter
`configure()` returned. The RPC server offers the correlation id this way, so the
runtime needs to know nothing of RPC.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["ContextFilter", "ExtrasFormatter", "JSONFormatter", "KaijuLogger", "LOG_FORMATS", "LogFormatError", "check_format", "configure", "log_field_providers", "record_extras"]

LOG_FORMATS = ("plain", "color", "json", "journald")

_STD_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})


class KaijuLogger(logging.LoggerAdapter):
    """A logger adapter whose calls take keyword extras: `logger.info("saved", user_id=1)`.

    The extras become attributes of the record, so the JSON format prints them as fields.
    """

    def __init__(self, logger: logging.Logger):
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        if len(kwargs) > len(_STD_KWARGS & kwargs.keys()):
            extra = dict(kwargs.get("extra") or {})
            for key in [k for k in kwargs if k not in _STD_KWARGS]:
                extra[key] = kwargs.pop(key)
            kwargs["extra"] = extra
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # report the caller, not this adapter
            self.logger.log(level, msg, *args, **kwargs)

    def getChild(self, suffix: str) -> KaijuLogger:  # noqa: N802 -- the logging module's name
        return KaijuLogger(self.logger.getChild(suffix))

    @property
    def name(self) -> str:
        return self.logger.name


# Context providers stamp request context (correlation id, ...) on records.
ContextProvider = Callable[[], dict[str, Any] | None]


def log_field_providers(services: Iterable[object]) -> list[ContextProvider]:
    """The context providers `services` offer: each service with a `log_fields()` method
    returning a provider (None: it offers none). Duplicates are dropped, order is kept."""
    found: list[ContextProvider] = []
    for service in services:
        offer = getattr(service, "log_fields", None)
        provider = offer() if callable(offer) else None
        if provider is not None and provider not in found:
            found.append(provider)
    return found


class ContextFilter(logging.Filter):
    """Adds the fields returned by the context providers to every record."""

    def __init__(self, providers: list[ContextProvider]):
        super().__init__()
        self.providers = providers

    def filter(self, record: logging.LogRecord) -> bool:
        for provider in self.providers:
            fields = provider()
            if fields:
                for key, value in fields.items():
                    if not hasattr(record, key):
                        setattr(record, key, value)
        return True


_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "critical"}


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call added to its record (keyword extras, the correlation id)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class ExtrasFormatter(logging.Formatter):
    """Wraps a text formatter (aiomisc's plain, color, journald) and appends the record's
    extras as `key=value`, so `logger.info("listening", url=...)` shows its url there too."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        extras = record_extras(record)
        if not extras:
            return text
        return text + " " + " ".join(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in extras.items())


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extras
    (keyword extras of the call, the request's correlation id) and `exception` if any."""

    def __init__(self) -> None:
        super().__init__()
        import msgspec

        self._encode = msgspec.json.Encoder(enc_hook=repr).encode

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": _LEVELS.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(record_extras(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return self._encode(data).decode()


class LogFormatError(ValueError):
    """A log format that is unknown, or cannot work here (journald without a journal)."""


def check_format(log_format: str) -> None:
    """Raise LogFormatError unless `log_format` can be used on this machine."""
    if log_format not in LOG_FORMATS:
        raise LogFormatError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    if log_format == "journald":
        try:
            from logging_journald import JournaldLogHandler
        except ImportError:
            raise LogFormatError('log format "journald" needs the logging-journald package') from None
        if not JournaldLogHandler.SOCKET_PATH.exists():
            raise LogFormatError(f'log format "journald": no journal socket at {JournaldLogHandler.SOCKET_PATH}') from None


def configure(
    level: str | int = "INFO",
    log_format: str = "plain",
    providers: list[ContextProvider] | None = None,
) -> ContextFilter:
    """Configure the root logger: aiomisc's plain, color or journald format, or kaiju's JSON
lines; returns the filter stamping request context on records."""
    import aiomisc_log

    check_format(log_format)
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        root = logging.getLogger()
        for old in root.handlers[:]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level.upper() if isinstance(level, str) else level)
    else:
        aiomisc_log.basic_config(level=level, log_format=log_format)
        for handler in logging.getLogger().handlers:
            if log_format != "journald" and handler.formatter is not None:  # journald keeps extras as fields
                handler.setFormatter(ExtrasFormatter(handler.formatter))
    context_filter = ContextFilter(list(providers or ()))
    for handler in logging.getLogger().handlers:
        handler.addFilter(context_filter)
    return context_filter

