"""Logging: a logger that takes keyword extras, and the request context on every record.

Nothing here changes the logging module on import; `configure()` is called by the
entrypoint when it starts.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["ContextFilter", "JSONFormatter", "KaijuLogger", "LOG_FORMATS", "configure"]

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
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return self._encode(data).decode()


def configure(
    level: str | int = "INFO",
    log_format: str = "plain",
    providers: list[ContextProvider] | None = None,
) -> ContextFilter:
    """Configure the root logger: aiomisc's plain, color or journald format, or kaiju's JSON
lines; returns the filter stamping request context on records."""
    import aiomisc_log

    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
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
    context_filter = ContextFilter(list(providers or ()))
    for handler in logging.getLogger().handlers:
        handler.addFilter(context_filter)
    return context_filter

