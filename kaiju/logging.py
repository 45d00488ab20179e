"""Logging: a logger that takes keyword extras, and the request context on every record.

Nothing here changes the logging module on import; `configure()` is called by the
entrypoint when it starts.

Request context reaches records through *context providers*: zero-argument callables
returning the fields for the record being logged now (or None). A service offers one
from its `log_fields()` hook (`kaiju.Service.log_fields`); the entrypoint asks the
services it started and adds their providers (`log_field_providers`) to the filter
`configure()` returned. The RPC server offers the correlation id this way, so the
runtime needs to know nothing of RPC.

The config's ``logging:`` section (`kaiju.config.settings.LoggingSettings`) chooses the
format, the handlers (stderr, a rotated file, the journal) and the levels of named
loggers; `logging_problems` finds what would keep it from working before a start.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from kaiju.masking import mask_text

__all__ = [
    "ContextFilter",
    "ExtrasFormatter",
    "JSONFormatter",
    "KaijuLogger",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogFormatError",
    "MaskingFilter",
    "PlainFormatter",
    "RateLimitedWarning",
    "check_format",
    "check_logging",
    "configure",
    "log_field_providers",
    "logging_problems",
    "record_extras",
]

LOG_FORMATS = ("plain", "color", "json", "journald")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_STD_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})


class KaijuLogger(logging.LoggerAdapter):
    """A logger adapter whose calls take keyword extras: `logger.info("saved", user_id=1)`.

    The extras become attributes of the record, so the JSON format prints them as fields.
    """

    def __init__(self, logger: logging.Logger):
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        if len(kwargs) > len(_STD_KWARGS & kwargs.keys()):
            extra: MutableMapping[str, Any] = dict(kwargs.get("extra") or {})
            for key in [k for k in kwargs if k not in _STD_KWARGS]:
                extra[key] = kwargs.pop(key)
            kwargs["extra"] = extra
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            msg, processed = self.process(msg, kwargs)
            processed["stacklevel"] = processed.get("stacklevel", 1) + 1  # report the caller, not this adapter
            self.logger.log(level, msg, *args, **processed)

    def getChild(self, suffix: str) -> KaijuLogger:
        return KaijuLogger(self.logger.getChild(suffix))

    @property
    def name(self) -> str:
        return self.logger.name


# Context providers stamp request context (correlation id, ...) on records.
ContextProvider = Callable[[], dict[str, Any] | None]


def log_field_providers(offers: Iterable[ContextProvider | None]) -> list[ContextProvider]:
    """The context providers among `offers` (what services' `log_fields()` returned; None:
    a service offers none). Duplicates are dropped, order is kept."""
    found: list[ContextProvider] = []
    for provider in offers:
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


class MaskingFilter(logging.Filter):
    """Masks credentials in every record, as `kaiju-run config` masks a config: in the
    message, the traceback and text extras, URL passwords, `password=...` pairs, secret query
    parameters and PEM blocks become `***` (`kaiju.masking.mask_text`). A method whose
    exception says `cannot connect to postgres://app:s3cr3t@db` logs `postgres://app:***@db`.

    The traceback is formatted here, masked, and kept as the record's `exc_text` (its
    `exc_info` dropped), so no handler formats the unmasked one again.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mask = mask_text
        self._traceback = logging.Formatter().formatException

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get("_kaiju_masked"):
            return True  # a record reaches every handler: masked once
        mask = self._mask
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = mask(self._traceback(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        for key, value in record_extras(record).items():
            if isinstance(value, str):
                setattr(record, key, mask(value))
        record._kaiju_masked = True
        return True


def _traceback_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback: masked text kept by `MaskingFilter`, else formatted now."""
    if record.exc_info and record.exc_info[0] is not None:
        return formatter.formatException(record.exc_info)
    return record.exc_text or None


_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


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
        return (
            text
            + " "
            + " ".join(
                f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in extras.items()
            )
        )


class PlainFormatter(logging.Formatter):
    """One line a machine can split: time (UTC), level, logger, `[correlation id]` (`-`
    outside a request), the message, then the record's extras as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        extras = record_extras(record)
        cid = extras.pop("correlation_id", None) or "-"
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        text = f"{when} {record.levelname} {record.name} [{cid}] {record.getMessage()}"
        if extras:
            text += " " + " ".join(
                f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in extras.items()
            )
        traceback = _traceback_text(self, record)
        if traceback:
            text += "\n" + traceback
        return text


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extras
    (keyword extras of the call, the request's correlation id) and `exception` if any."""

    def __init__(self) -> None:
        super().__init__()
        import msgspec

        self._encode = msgspec.json.Encoder(enc_hook=repr).encode

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": _LEVELS.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(record_extras(record))
        traceback = _traceback_text(self, record)
        if traceback:
            data["exception"] = traceback
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
            raise LogFormatError(
                f'log format "journald": no journal socket at {JournaldLogHandler.SOCKET_PATH}'
            ) from None


def configure(
    level: str | int = "INFO",
    log_format: str = "plain",
    providers: list[ContextProvider] | None = None,
    settings: Any = None,
) -> ContextFilter:
    """Configure the root logger and return the filter stamping request context on records
    (every handler also masks credentials: `MaskingFilter`).

    `settings` is the config's ``logging`` section (`LoggingSettings`, None: one stderr
    handler); `log_format` is the format of handlers that name none (``journald``: the
    default handler writes to the journal). `level` is the root logger's level; the
    section's ``loggers`` set the levels of named loggers. Raises LogFormatError when a
    handler cannot work here (see `logging_problems`).
    """
    check_format(log_format)
    wanted = list(settings.handlers) if settings is not None and settings.handlers else [None]
    problems = [message for _, message in logging_problems(settings, log_format)]
    if problems:
        raise LogFormatError(problems[0])
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    context_filter = ContextFilter(list(providers or ()))
    masking = MaskingFilter()
    for entry in wanted:
        handler = _handler(entry, log_format)
        handler.addFilter(context_filter)
        handler.addFilter(masking)
        root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name, logger_level in (settings.loggers if settings is not None else {}).items():
        logging.getLogger(name).setLevel(logger_level)
    return context_filter


def _handler(entry: Any, default_format: str) -> logging.Handler:
    """The handler for one ``logging.handlers`` entry (None: the default stderr one)."""
    kind = entry.type if entry is not None else ("journald" if default_format == "journald" else "stderr")
    log_format = (entry.format if entry is not None else None) or default_format
    if kind == "journald":
        from logging_journald import JournaldLogHandler

        handler: logging.Handler = JournaldLogHandler()  # extras travel as journal fields
    else:
        if kind == "file":
            handler = logging.handlers.RotatingFileHandler(
                entry.path, maxBytes=entry.max_bytes, backupCount=entry.backups
            )
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_formatter(log_format))
    if entry is not None and entry.level is not None:
        handler.setLevel(entry.level)
    return handler


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JSONFormatter()
    if log_format == "color":
        import aiomisc_log

        colored = aiomisc_log.create_logging_handler(aiomisc_log.LogFormat.color)
        if colored is not None and colored.formatter is not None:
            return ExtrasFormatter(colored.formatter)
    return PlainFormatter()


def logging_problems(settings: Any, log_format: str | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """What would keep the ``logging`` section `settings` from working on this machine, as
    `(key path, message)` pairs: a journal that is not there, a log file that cannot be
    written, ``journald`` as the format of a stderr or file handler."""
    found: list[tuple[tuple[Any, ...], str]] = []
    section_format = getattr(settings, "format", None)
    if section_format == "journald" and log_format in (None, "journald"):
        found += [(("logging", "format"), m) for m in _journal_problems()]
    for index, entry in enumerate(getattr(settings, "handlers", None) or ()):
        path: tuple[Any, ...] = ("logging", "handlers", index)
        if entry.type == "journald":
            found += [(path + ("type",), m) for m in _journal_problems()]
        elif entry.format == "journald":
            found.append(
                (
                    path + ("format",),
                    f"journald is a handler type, not a format for a {entry.type} handler: use type: journald",
                )
            )
        if entry.type == "file":
            found += [(path + ("path",), m) for m in _file_problems(entry.path)]
    return found


def _journal_problems() -> list[str]:
    try:
        check_format("journald")
    except LogFormatError as exc:
        return [str(exc)]
    return []


def _file_problems(path: str) -> list[str]:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path):
        if os.path.isdir(path) or not os.access(path, os.W_OK):
            return [f"cannot write the log file {path}"]
    elif not os.path.isdir(folder):
        return [f"no directory {folder} for the log file"]
    elif not os.access(folder, os.W_OK | os.X_OK):
        return [f"cannot create the log file in {folder}"]
    return []


def check_logging(config: Any, log_format: str | None = None) -> None:
    """Raise the ConfigError (file, key path, message) of the first of `logging_problems`
    of a loaded config (`LoadedConfig`); `log_format` is one given on the command line."""
    for path, message in logging_problems(config.settings.logging, log_format):
        raise config.error(path, message)


class RateLimitedWarning:
    """One WARNING per `interval` seconds for an event that may repeat many times a second.

    The first event logs at once; later ones are counted and the count is logged with the
    next event after the interval has passed (as `count`, the events since the last record).
    """

    def __init__(self, logger: KaijuLogger, message: str, interval: float):
        self.logger = logger
        self.message = message
        self.interval = interval
        self.count = 0
        self.records = 0
        self._next_at = 0.0

    def event(self, **facts: Any) -> None:
        """Count one event; log it (with the count so far) if none was logged in the interval."""
        self.count += 1
        now = time.monotonic()
        if now < self._next_at:
            return
        self._next_at = now + self.interval
        self.logger.warning(self.message, count=self.count, interval=self.interval, **facts)
        self.count = 0
        self.records += 1
