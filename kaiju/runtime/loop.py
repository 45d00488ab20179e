"""Which event loop an app runs on: uvloop or asyncio's own.

`main.event_loop` in the config says `auto` (the default), `uvloop` or `asyncio`; the
environment variable `KAIJU_LOOP`, when set, wins over it (an operator's switch that needs
no config edit). `auto` leaves the choice to aiomisc: uvloop when it is installed and
`AIOMISC_USE_UVLOOP` does not turn it off, else asyncio's loop.

The choice reaches `aiomisc.Entrypoint` through its public arguments: `loop_factory`
(aiomisc 18) or `policy` (aiomisc 17).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kaiju.config.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.config.loader import LoadedConfig

__all__ = [
    "EVENT_LOOPS",
    "LOOP_ENV",
    "LoopUnavailable",
    "choose_loop",
    "config_loop",
    "entrypoint_loop_kwargs",
    "loop_factory",
    "loop_name",
]

EVENT_LOOPS = ("auto", "uvloop", "asyncio")
LOOP_ENV = "KAIJU_LOOP"


class LoopUnavailable(ValueError):
    """The chosen event loop is unknown or not installed; the message says which and where."""


def choose_loop(setting: str = "auto", environ: Mapping[str, str] | None = None) -> str:
    """The loop asked for: `KAIJU_LOOP` if set, else `setting`; one of `EVENT_LOOPS`.

    Raises LoopUnavailable for an unknown name, or for `uvloop` when it is not installed."""
    environ = os.environ if environ is None else environ
    where, choice = (LOOP_ENV, environ[LOOP_ENV]) if environ.get(LOOP_ENV) else ("main.event_loop", setting)
    choice = choice.strip().lower()
    if choice not in EVENT_LOOPS:
        raise LoopUnavailable(f'{where}: expected one of {", ".join(EVENT_LOOPS)}, got "{choice}"')
    if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise LoopUnavailable(f"{where}: uvloop is asked for but not installed (pip install uvloop)")
    return choice


def config_loop(config: LoadedConfig) -> str:
    """The loop `config`'s `main.event_loop` (or `KAIJU_LOOP`) asks for; raises ConfigError,
    naming where it was asked, when it is unknown or not installed."""
    try:
        return choose_loop(config.settings.main.event_loop)
    except LoopUnavailable as exc:
        source = "environment" if os.environ.get(LOOP_ENV) else config.source(("main", "event_loop"))
        raise ConfigError(str(exc), source=source) from None


def entrypoint_loop_kwargs(choice: str) -> dict[str, Any]:
    """The keyword arguments that make `aiomisc.Entrypoint` run on `choice`'s loop."""
    if choice == "auto":
        return {}  # aiomisc's own default
    import aiomisc

    params = inspect.signature(aiomisc.Entrypoint).parameters
    if choice == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        policy: type[asyncio.AbstractEventLoopPolicy] = uvloop.EventLoopPolicy
    else:
        # not asyncio.new_event_loop: it asks the global policy, which may be uvloop's
        factory, policy = asyncio.SelectorEventLoop, asyncio.DefaultEventLoopPolicy
    if "loop_factory" in params:
        return {"loop_factory": factory}
    return {"policy": policy()}  # aiomisc 17


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of `choice`, for `asyncio.Runner(loop_factory=...)` outside an
    entrypoint (the benchmarks); `auto` picks as aiomisc does."""
    off = os.environ.get("AIOMISC_USE_UVLOOP", "1").lower() not in ("yes", "1", "enabled", "enable", "on", "true")
    if choice == "asyncio" or (choice == "auto" and (off or importlib.util.find_spec("uvloop") is None)):
        return asyncio.SelectorEventLoop  # whatever the global policy says
    import uvloop

    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """`"uvloop"` or `"asyncio"`: which implementation `loop` (default: the running one) is."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
