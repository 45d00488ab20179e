"""`TestApp`: an app built from its own config files and started inside a test's event loop.

    async with TestApp("conf/app.yml", settings={"orders": {"limit": 2}}) as app:
        assert await app.call("orders.count") == 0
        await app.fire("cleanup")                     # a periodic or cron task, now
        async with app.http() as client:              # the app's HTTP server, on a free port
            ...

What changes against a real start: HTTP servers listen on a free port, the Redis services
are swapped for the memory backends (unless `redis=` asks for Redis), services named in
`replace=` are test doubles, and nothing reads the OS environment unless asked.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kaiju.config.loader import LoadedConfig, load_config, load_config_data
from kaiju.rpc.access import Scope, Session
from kaiju.runtime.service import App, Service

__all__ = ["TestApp"]

# Redis backend -> the memory backend that stands in for it in tests (None: left out)
MEMORY_STAND_INS: dict[str, str | None] = {
    "RedisCache": "MemoryCache",
    "RedisLocks": "MemoryLocks",
    "RedisStream": "MemoryStream",
    "RedisEvents": "Events",
    "RedisConnection": None,
}


class TestApp:
    """An app from `config` (files, as `kaiju-run -c`; or a mapping) for the length of an
    `async with` block, in the running loop.

    - `env`: template values (`-e KEY=VALUE`); `env_files`: env files; `os_env`: read the
      OS environment too (off by default, so tests do not depend on it);
    - `settings`: `{service name: {setting: value}}` laid over the config's;
    - `replace`: `{service name: instance}`: the instance runs instead of that entry
      (under that name; it must be startable like any service);
    - `redis`: False (default) runs RedisCache, RedisLocks and RedisStream as MemoryCache,
      MemoryLocks and MemoryStream and leaves RedisConnection out; True keeps them; a URL
      keeps them and points every RedisConnection at it; a dict of RedisConnection
      settings (`redis_settings("cluster")`, say) does so in any mode, replacing the
      config's url, sentinels, master_name and cluster_nodes;
    - `spans`: True records every span in memory (the config's `Telemetry`, or one added,
      exporting to memory, every trace kept): `spans()` returns them.

    Raises ConfigError for a bad config, StartupError when a required service fails.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | Sequence[str | Path | Mapping[str, Any]],
        *,
        env: Mapping[str, Any] | None = None,
        env_files: Sequence[str | Path] = (),
        os_env: bool = False,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        replace: Mapping[str, Service] | None = None,
        redis: bool | str | dict[str, Any] = False,
        spans: bool = False,
    ):
        self.replace = dict(replace or {})
        loaded = _load(config, env, env_files, os_env)  # errors name the user's files
        data = _for_tests(loaded.data, dict(settings or {}), self.replace, redis)
        if spans:
            data = _recording_spans(data)
        self.config: LoadedConfig = load_config_data(data, source="<TestApp>", os_env=False)
        self.entrypoint: Any = None
        self._traveller: Any = None

    async def __aenter__(self) -> TestApp:
        from kaiju.runtime.entrypoint import Entrypoint

        doubles = []
        for name, double in self.replace.items():
            if isinstance(double, Service):
                double.name = name
            doubles.append(double)
        self.entrypoint = Entrypoint(*doubles, config=self.config, catch_signals=(), log_config=False)
        await self.entrypoint.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.entrypoint.__aexit__(*exc)
        finally:
            if self._traveller is not None:
                self._traveller.stop()
                self._traveller = None

    # -- what a test reaches -------------------------------------------------

    @property
    def app(self) -> App:
        """The running app: `app.services`, `app.name`, ..."""
        return self.entrypoint.app

    def service(self, name: str) -> Any:
        """The running service called `name`; KeyError (naming the others) when there is none."""
        try:
            return self.app.services[name]
        except KeyError:
            raise KeyError(f"no service {name!r}; the app has {', '.join(sorted(self.app.services))}") from None

    def _first(self, kind: type) -> Any:
        found = [s for s in self.app.services.values() if isinstance(s, kind)]
        if not found:
            raise LookupError(f"the app has no {kind.__name__}")
        return found[0]

    async def call(
        self,
        method: str,
        params: dict | list | None = None,
        *,
        scope: Scope | str = Scope.SYSTEM,
        session: Session | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call an RPC method of the app in-process, as `scope` (or as `session`); returns the
        result or raises the typed RPC error (`kaiju.rpc.MethodNotFound`, `InvalidParams`, ...)."""
        from kaiju.rpc.access import parse_scope
        from kaiju.rpc.server import RPCServer

        rpc = self._first(RPCServer)
        return await rpc.call(method, params, scope=parse_scope(scope), session=session, headers=headers)

    @property
    def url(self) -> str:
        """The JSON-RPC URL of the app's (first) HTTP server."""
        from kaiju.http.server import HTTPServer

        return self._first(HTTPServer).url

    @asynccontextmanager
    async def http(self, **kwargs: Any) -> Any:
        """An `aiohttp.ClientSession` whose relative URLs go to the app's HTTP server
        (`await client.post("/public/rpc", json=...)`); keyword arguments go to the session."""
        import aiohttp
        from yarl import URL

        base = URL(self.url).with_path("/")
        async with aiohttp.ClientSession(base_url=base, **kwargs) as client:
            yield client

    def travel(self, to: datetime.datetime | float) -> None:
        """Move the wall clock to `to` (an aware datetime, or Unix seconds), from where it goes
        on ticking, and re-arm every task from there: a cron schedule is tested without
        waiting for it (`time.time()` and `datetime.now()` move; the event loop's clock does
        not). Needs the `time-machine` package; the clock comes back when the block ends."""
        try:
            import time_machine
        except ImportError:
            raise RuntimeError("TestApp.travel needs the time-machine package: pip install time-machine") from None
        from kaiju.tasks.service import ScheduledTask

        if self._traveller is not None:
            self._traveller.stop()
        self._traveller = time_machine.travel(to, tick=True)
        self._traveller.start()
        for service in self.app.services.values():
            if isinstance(service, ScheduledTask):
                service.reschedule()

    def spans(self, name: str | None = None) -> list[Any]:
        """The spans ended so far (called `name`, when given), in the order they ended:
        OpenTelemetry SDK `ReadableSpan`s (`.name`, `.attributes`, `.parent`, `.status`).
        Needs `TestApp(..., spans=True)`."""
        return self.recorder.spans(name)

    @property
    def recorder(self) -> Any:
        """The `kaiju.telemetry.memory.SpanRecorder` keeping the spans (`one(name)`,
        `parent_of(span)`, `children(span)`, `clear()`); needs `TestApp(..., spans=True)`."""
        from kaiju.telemetry.service import Telemetry

        try:
            return self._first(Telemetry).recorder
        except (LookupError, RuntimeError):
            raise RuntimeError("the app records no spans: make it with TestApp(..., spans=True)") from None

    async def fire(self, task: str) -> Any:
        """Run the periodic or cron task called `task` now and wait for the run; returns its
        result, or raises RuntimeError with the run's error."""
        service = self.service(task)
        await service.fire_now()
        if service.last_error is not None:
            raise RuntimeError(f"task {task} failed: {service.last_error}")
        return service.last_result


def _load(config: Any, env: Any, env_files: Sequence[str | Path], os_env: bool) -> LoadedConfig:
    if isinstance(config, Mapping):
        return load_config_data(config, env=env, os_env=os_env)
    files = [config] if isinstance(config, (str, Path)) else list(config)
    return load_config(files, env_files=env_files, env=env, os_env=os_env)


def _for_tests(
    data: dict[str, Any],
    settings: dict[str, Mapping[str, Any]],
    replace: dict[str, Any],
    redis: bool | str | dict[str, Any],
) -> dict[str, Any]:
    """The effective config with the test's changes (see `TestApp`)."""
    from kaiju.runtime.registry import Registry

    registry = Registry(list(data.get("packages", [])))
    entries = []
    named = set()
    for entry in data.get("services", []):
        entry = dict(entry)
        cls = str(entry["cls"])
        base = _bare(cls)
        name = entry.get("name") or _default_name(registry, cls)
        if name in replace or entry.get("enabled") is False:
            named.add(name)
            continue
        entry_settings = dict(entry.get("settings") or {})
        if base in MEMORY_STAND_INS and redis is False:
            stand_in = MEMORY_STAND_INS[base]
            if stand_in is None:
                continue
            entry["cls"] = stand_in
            entry["name"] = name
            entry_settings = _memory_settings(stand_in, entry_settings)
        elif base == "RedisConnection" and isinstance(redis, str):
            entry_settings["url"] = redis
        elif base == "RedisConnection" and isinstance(redis, dict):
            for mode_key in ("url", "sentinels", "master_name", "cluster_nodes"):
                entry_settings.pop(mode_key, None)
            entry_settings.update(redis)
        elif base == "HTTPServer" and "unix_socket" not in entry_settings:
            entry_settings["port"] = 0
        entry_settings.update(settings.get(name, {}))
        entry["settings"] = entry_settings
        named.add(name)
        entries.append(entry)
    unknown = sorted(set(settings) - named)
    if unknown:
        raise KeyError(f"settings= names no service of the config: {', '.join(unknown)}")
    return {**data, "services": entries}


# how a TestApp with spans=True runs the app's Telemetry (or one added): every span kept in memory
_RECORDING = {"exporter": "memory", "sample_ratio": 1.0, "global_provider": False}


def _recording_spans(data: dict[str, Any]) -> dict[str, Any]:
    """The config with its `Telemetry` entries recording in memory, or one such entry added."""
    entries, found = [], False
    for entry in data.get("services", []):
        if _bare(str(entry["cls"])) == "Telemetry":
            entry = {**entry, "settings": {**dict(entry.get("settings") or {}), **_RECORDING}}
            found = True
        entries.append(entry)
    if not found:
        entries.insert(0, {"cls": "Telemetry", "settings": dict(_RECORDING)})
    return {**data, "services": entries}


def _bare(cls: str) -> str:
    """The class name a `cls:` value ends with (`kaiju.cache.redis:RedisCache` -> RedisCache)."""
    return cls.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _default_name(registry: Any, cls: str) -> str:
    """The name a service of class `cls` gets when its entry gives none."""
    try:
        found = registry.resolve(cls)
    except Exception:  # the real build reports it, with the config's key path
        return _bare(cls)
    default = getattr(found, "default_name", None)
    return default() if callable(default) else found.__name__


def _memory_settings(stand_in: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings of a Redis backend that its memory stand-in also has."""
    from kaiju.runtime.registry import Registry
    from kaiju.runtime.service import settings_fields

    fields = settings_fields(Registry(use_entry_points=False).resolve(stand_in))
    return {k: v for k, v in settings.items() if k in fields}
