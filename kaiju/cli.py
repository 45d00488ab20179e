"""`kaiju-run`: build an app from config and run it, or inspect it.

    kaiju-run -c FILE [-c FILE ...] [-f ENVFILE ...] [-e KEY=VALUE ...] [--no-os-env]
              [--log-level LEVEL] [--log-format plain|color|json|journald] [COMMAND ...]

Without -c the config files are $KAIJU_CONFIG, without -f the env files $KAIJU_ENV_FILE
(path lists, ':'-separated); the options may also follow the command.

Exit status: 0 done, 1 a service failed (to start, or a called method failed),
2 a bad config or bad arguments.

A command is a `Command` in `COMMANDS`: a name, a help line, a function adding its
arguments and a function running it. Adding one is adding an entry.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, NamedTuple

from kaiju import __version__
from kaiju.config.errors import ConfigError
from kaiju.config.sources import CONFIG_ENV, ENV_FILE_ENV, paths_from_env
from kaiju.logging import LOG_FORMATS, LOG_LEVELS, LogFormatError, check_format

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    """One `kaiju-run` command."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], object] | None = None
    needs_config: bool = True


# -- shared steps -------------------------------------------------------------------


def _sources(args: argparse.Namespace) -> tuple:
    """What a config load reads from the command line: equal sources load an equal config."""
    return tuple(args.config), tuple(args.env_file), tuple(args.env), args.os_env


def load(args: argparse.Namespace):
    """The effective config from the command line's sources (raises ConfigError).

    A config `main` already loaded from the same sources (to find the app's commands) is
    used once instead of reading and parsing the files again."""
    from kaiju.config.loader import load_config
    from kaiju.config.sources import parse_env_assignment

    loaded = getattr(args, "preloaded", {}).pop(_sources(args), None)
    if loaded is None:
        env = dict(parse_env_assignment(item) for item in args.env)
        loaded = load_config(args.config, env_files=args.env_file, env=env, os_env=args.os_env, strict_env=True)
    if args.log_level:
        loaded.settings.main.loglevel = args.log_level.upper()
    return loaded


def run_app(
    args: argparse.Namespace,
    body: Callable[[Any], Any] | None = None,
    *services: Any,
    config: Any = None,
    transports: bool = True,
) -> int:
    """Start the app (`config`, else the command line's, plus `services`); run `body(entrypoint)`
    inside it if given, else run until a signal. `transports=False`: the config's transports
    were left out (`_prepare_call`), and the app knows (`App.transports`)."""
    from kaiju.runtime.entrypoint import Entrypoint, StartupError, StartupInterrupted

    kwargs = {"log_format": args.log_format} if args.log_format else {}
    ep = Entrypoint(*services, config=config or load(args), **kwargs)
    ep.app.transports = transports
    try:
        with ep as loop:
            if body is None:
                loop.run_forever()
                return 0
            return loop.run_until_complete(body(ep))
    except StartupInterrupted:
        return 0
    except StartupError as exc:
        print(f"kaiju-run: {exc}", file=sys.stderr)
        return 1


# -- commands ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    return run_app(args)


def cmd_check(args: argparse.Namespace) -> int:
    from kaiju.logging import check_logging
    from kaiju.runtime.loop import config_loop
    from kaiju.runtime.plan import build_plan

    loaded = load(args)
    check_logging(loaded, args.log_format)
    plan = build_plan(loaded)
    config_loop(loaded)  # a start would refuse a loop that cannot be had
    print(plan.describe())
    fires = _next_fires(plan)
    if fires:
        print("next fires (a start now):")
        print("\n".join(fires))
    return 0


def _next_fires(plan: Any) -> list[str]:
    """A line per task of the plan: its next two fire times, in its time zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from kaiju.tasks.service import ScheduledTask

    lines = []
    for name, spec in plan.specs.items():
        task = spec.service
        if not isinstance(task, ScheduledTask) or not task.enabled:
            continue
        zone = getattr(task, "timezone", None)
        tz = ZoneInfo(zone) if zone else UTC
        shown = ", ".join(datetime.fromtimestamp(t, tz).isoformat(timespec="seconds") for t in task.next_fires(2))
        lines.append(f"  {name}: {shown} ({task.describe()['schedule']}{', ' + zone if zone else ''})")
    return lines


def cmd_config(args: argparse.Namespace) -> int:
    from kaiju.config.display import dump_yaml, mask_secrets

    loaded = load(args)
    data = loaded.data if args.show_secrets else mask_secrets(loaded.data)
    sys.stdout.write(dump_yaml(data))
    return 0


def _rpc_servers(services: Any) -> list:
    from kaiju.rpc.server import RPCServer

    return [s for s in services if isinstance(s, RPCServer)]


def cmd_methods(args: argparse.Namespace) -> int:
    from kaiju.rpc.server import RPCServer
    from kaiju.runtime.plan import build_plan

    app = build_plan(load(args)).app
    servers = _rpc_servers(app.services.values())
    rpc = servers[0] if servers else RPCServer(app=app)
    for service in app.services.values():
        rpc.add_service(service)
    for m in rpc.describe():
        params = ", ".join(p if isinstance(p, str) else p.get("name", "") for p in m.get("params", ()))
        doc = " ".join((m.get("doc") or "").split("\n\n")[0].split())  # the first paragraph, on one line
        print(f"{m['name']}({params})  [{m.get('permission', '')}]" + (f"  {doc}" if doc else ""))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    import json

    import msgspec

    from kaiju.rpc.errors import RPCError

    try:
        params = json.loads(args.params) if args.params else None
    except ValueError as exc:
        print(f"kaiju-run: PARAMS_JSON is not JSON: {exc}", file=sys.stderr)
        return 2
    if params is not None and not isinstance(params, dict | list):
        print("kaiju-run: PARAMS_JSON must be an object or an array", file=sys.stderr)
        return 2
    from kaiju.rpc.access import Scope, parse_scope

    try:
        headers = _call_headers(args)
        as_caller = headers is not None and (
            "Session-Id" in headers or any(k.lower() == "authorization" for k in headers)
        )
        scope = parse_scope(args.scope) if args.scope else Scope.GUEST if as_caller else Scope.SYSTEM
    except ValueError as exc:
        print(f"kaiju-run: {exc}", file=sys.stderr)
        return 2

    async def call(ep: Any) -> int:
        rpc = _rpc_servers(ep.app.services.values())[0]
        try:
            result = await rpc.call(args.method, params, scope=scope, headers=headers)
        except RPCError as exc:
            print(json.dumps({"error": exc.to_dict()}, default=str), file=sys.stderr)
            return 1
        try:  # the JSON a client of the app's HTTP server would get
            encoded = rpc.encode(result)
        except (TypeError, ValueError) as exc:
            print(f"kaiju-run: the result cannot be encoded as JSON: {exc}", file=sys.stderr)
            return 1
        print(msgspec.json.format(encoded, indent=2).decode())
        return 0

    config = load(args)
    return run_app(args, call, *_prepare_call(config), config=config, transports=False)


def _prepare_call(config: Any) -> list:
    """Disable HTTP servers, stream listeners and tasks: a one-off call must not bind the
    app's ports (it may be running) nor consume its streams nor fire its schedules.
    Returns the services to add: an RPCServer when the config enables none."""
    from kaiju.rpc.server import RPCServer
    from kaiju.runtime.registry import ClassNotFound, Registry

    registry = Registry()
    for package in config.settings.packages:
        try:
            registry.add_package(package)
        except ClassNotFound:
            continue  # build_plan reports it with the file and key path
    has_rpc = False
    for entry in config.settings.services:
        try:
            cls = registry.resolve(entry.cls)
        except ClassNotFound:
            continue  # build_plan reports it with the file and key path
        if getattr(cls, "transport", False):
            entry.enabled = False
        has_rpc = has_rpc or (entry.enabled and issubclass(cls, RPCServer))
    return [] if has_rpc else [RPCServer()]


def cmd_health(args: argparse.Namespace) -> int:
    """Ask a running app's HTTPServer for its readiness report: 0 ready, 1 not ready or no answer."""
    import asyncio

    import aiohttp

    from kaiju.http.server import HTTPServer
    from kaiju.runtime.plan import build_plan

    servers = [s for s in build_plan(load(args)).app.services.values() if isinstance(s, HTTPServer) and s.ready_path]
    if not servers:
        print("kaiju-run: no HTTPServer with a ready_path in the config", file=sys.stderr)
        return 2
    http = servers[0]
    # the ops listener when there is one: its report says why a service fails
    ops = http.ops_port is not None
    unix = None if ops else http.unix_socket
    port = (http.ops_port or 0) if ops else http.port
    if not unix and port == 0:
        setting = "ops_port" if ops else "port"
        print(
            f"kaiju-run: {http.name} listens on {setting} 0 (any free port): the config cannot tell where to ask",
            file=sys.stderr,
        )
        return 2
    host = http.ops_host if ops else http.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard address: ask this host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{port}{http.ready_path}"

    async def ask() -> tuple[int, bytes]:
        connector = aiohttp.UnixConnector(path=unix) if unix else None
        timeout = aiohttp.ClientTimeout(total=args.timeout)
        target = f"http://localhost{http.ready_path}" if unix else url
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, session.get(target) as resp:
            return resp.status, await resp.read()

    try:
        status, body = asyncio.run(ask())
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"kaiju-run: no answer from {unix or url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(body.decode(errors="replace"))
    return 0 if status == 200 else 1


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from kaiju.auth.passwords import hash_password

    if sys.stdin.isatty():  # typed: no echo, and twice to catch a typo
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("kaiju-run: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("kaiju-run: no password given on standard input", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _call_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", metavar="METHOD", help="RPC method name, e.g. demo.echo")
    p.add_argument("params", metavar="PARAMS_JSON", nargs="?", help="params as a JSON object or array")
    p.add_argument(
        "--scope",
        metavar="NAME",
        help="call with this scope (system, admin, user, guest; default: system, "
        "or guest with --session or an Authorization header)",
    )
    p.add_argument(
        "--session", metavar="ID", help="call as the session with this id (Session-Id), from the app's session store"
    )
    p.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (Authorization, Timeout, ...); repeatable",
    )


def _call_headers(args: argparse.Namespace) -> dict[str, str] | None:
    """The headers of `call` from -H and --session; raises ValueError for a malformed -H."""
    headers: dict[str, str] = {}
    for item in args.headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"expected -H 'NAME: VALUE', got {item!r}")
        headers[name.strip()] = value.strip()
    if args.session:
        headers["Session-Id"] = args.session
    return headers or None


def _clients() -> Any:
    """The client generators' commands, imported when one runs."""
    from kaiju.clients import commands

    return commands


def _fleet_call(args: argparse.Namespace, method: str, params: dict[str, Any], lines: bool = False) -> int:
    """`kaiju-run tasks|streams ...` (`kaiju.fleet`): call `method` inside the app started
    without its transports; print the result as JSON (each item on a line of its own with
    `lines`). 1 when the method fails, 2 when the app has no service for it."""
    import msgspec

    from kaiju.rpc.errors import MethodNotFound, RPCError

    async def call(ep: Any) -> int:
        rpc = _rpc_servers(ep.app.services.values())[0]
        try:
            result = await rpc.call(method, params)
        except MethodNotFound:
            service = method.split(".")[0]
            print(
                f"kaiju-run: the app has no {service} service (add `cls: {service.title()}` to the config)",
                file=sys.stderr,
            )
            return 2
        except RPCError as exc:
            print(msgspec.json.encode({"error": exc.to_dict()}).decode(), file=sys.stderr)
            return 1
        if lines:
            for item in result:
                print(rpc.encode(item).decode())
        else:
            print(msgspec.json.format(rpc.encode(result), indent=2).decode())
        return 0

    config = load(args)
    return run_app(args, call, *_prepare_call(config), config=config, transports=False)


def _fleet() -> Any:
    """The fleet control commands, imported when one runs."""
    from kaiju import fleet

    return fleet


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("run", "start the services and run until SIGINT or SIGTERM (the default)", cmd_run),
        Command(
            "check", "load and validate the config, resolve classes and dependencies, print the start layers", cmd_check
        ),
        Command(
            "config",
            "print the effective config after templates as YAML, secrets masked",
            cmd_config,
            lambda p: p.add_argument("--show-secrets", action="store_true", help="do not mask secret values"),
        ),
        Command("methods", "list the RPC methods the app exposes", cmd_methods),
        Command(
            "call",
            "start the services, call one RPC method (system scope unless told), print the result as JSON, stop",
            cmd_call,
            _call_arguments,
        ),
        Command(
            "health",
            "ask the running app (at its HTTPServer's address) whether it is ready; exit 0 ready, 1 not",
            cmd_health,
            lambda p: p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer"),
        ),
        Command(
            "openrpc",
            "print the app's OpenRPC document (what rpc.discover answers a caller of --scope) as JSON",
            lambda args: _clients().cmd_openrpc(args, load(args)),
            lambda p: _clients().openrpc_arguments(p),
        ),
        Command(
            "client",
            "write a typed client of the app's API (--lang python or typescript) from its OpenRPC document",
            lambda args: _clients().cmd_client(args, load(args)),
            lambda p: _clients().client_arguments(p),
        ),
        Command(
            "tasks",
            "list the app's tasks and their last runs, or pause, resume or run one in every process",
            lambda args: _fleet().cmd_tasks(args, _fleet_call),
            lambda p: _fleet().tasks_arguments(p),
        ),
        Command(
            "streams",
            "list, replay (each once) or purge the dead letters of a topic",
            lambda args: _fleet().cmd_streams(args, _fleet_call),
            lambda p: _fleet().streams_arguments(p),
        ),
        Command(
            "hash-password",
            "read a password from standard input, print its argon2id hash for a config",
            cmd_hash_password,
            needs_config=False,
        ),
    )
}


def _source_options(p: argparse.ArgumentParser, after: bool) -> None:
    """The options naming config sources and logging. Given after the command (`after`), they
    land in `after_*` destinations without defaults, and `main` lays them over the ones
    given before it."""

    def add(*flags: str, dest: str, **kwargs: Any) -> None:
        if after:
            kwargs = {**kwargs, "default": argparse.SUPPRESS}
            dest = "after_" + dest
        p.add_argument(*flags, dest=dest, **kwargs)

    add(
        "-c",
        "--config",
        dest="config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file; repeatable, merged in order (default: $KAIJU_CONFIG)",
    )
    add(
        "-f",
        "--env-file",
        dest="env_file",
        action="append",
        default=[],
        metavar="ENVFILE",
        help="JSON or KEY=VALUE env file; repeatable (default: $KAIJU_ENV_FILE)",
    )
    add("-e", "--env", dest="env", action="append", default=[], metavar="KEY=VALUE", help="template value; repeatable")
    add(
        "--no-os-env",
        dest="os_env",
        action="store_false",
        default=True,
        help="do not read template values from the OS environment",
    )
    add(
        "--log-level", dest="log_level", type=str.upper, choices=LOG_LEVELS, default=None, help="override main.loglevel"
    )
    add(
        "--log-format",
        dest="log_format",
        choices=LOG_FORMATS,
        default=None,
        help="log format (default: logging.format, else color on a terminal, journald under systemd, plain otherwise)",
    )


def parser(commands: dict[str, Command] | None = None, only: str | None = None) -> argparse.ArgumentParser:
    """The command line of `kaiju-run` with the built-in `COMMANDS` and an app's `commands`.

    With `only` (a command's name, or "" for none), the other commands are listed with their
    help line but get no options: a command line names one command, and building every
    command's options costs a start-up more than the rest of the parsing."""
    p = argparse.ArgumentParser(
        prog="kaiju-run",
        description="Run a kaiju app from config files.",
        epilog="Sources, lowest to highest precedence: config files, env files, OS environment, -e. "
        "Without -c, the config files are $KAIJU_CONFIG (paths separated by ':'); without -f, the env "
        "files are $KAIJU_ENV_FILE. The options may also follow the command.",
    )
    _source_options(p, after=False)
    p.add_argument("--version", action="version", version=f"kaiju {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in (commands or COMMANDS).values():
        cp = sub.add_parser(command.name, help=command.help, description=command.help)
        if only is not None and command.name != only:
            continue
        _source_options(cp, after=True)
        if command.add_arguments:
            command.add_arguments(cp)
    return p


def parse(argv: list[str] | None, commands: dict[str, Command], word: str | None) -> argparse.Namespace:
    """The command line, with options given after the command laid over those before it and
    the config and env files from KAIJU_CONFIG / KAIJU_ENV_FILE when none are given. `word`
    is the first word of `argv` that is no source option (`_pre_parse`)."""
    # the options of the command named (of none when none is), or of every command when the
    # first word names none: argparse then reports the mistake as it always has
    only = "" if word is None else word if word in commands else None
    args = parser(commands, only).parse_args(argv)
    for name in ("config", "env_file", "env"):
        getattr(args, name).extend(getattr(args, "after_" + name, []))
    for name in ("os_env", "log_level", "log_format"):
        if hasattr(args, "after_" + name):
            setattr(args, name, getattr(args, "after_" + name))
    if not args.config:
        args.config = paths_from_env(CONFIG_ENV)
    if not args.env_file:
        args.env_file = paths_from_env(ENV_FILE_ENV)
    return args


class CommandLine(NamedTuple):
    """What `_pre_parse` reads from a command line before its commands are known."""

    sources: argparse.Namespace  # the source options (-c, -f, -e, ...), wherever they stand
    word: str | None  # the first other word: the command, when it names one
    wants_help: bool  # -h or --help is given


def _pre_parse(argv: list[str] | None) -> CommandLine:
    """The source options of `argv`, its first other word and whether it asks for help."""
    pre = argparse.ArgumentParser(add_help=False)
    _source_options(pre, after=False)
    known, rest = pre.parse_known_args(argv)
    word = next((w for w in rest if not w.startswith("-")), None)
    return CommandLine(known, word, "-h" in rest or "--help" in rest)


def app_commands(line: CommandLine, preloaded: dict[tuple, Any] | None = None) -> dict[str, Command]:
    """The commands of the config's `commands:` list (a config that does not load adds none:
    the command run reports it) and of installed distributions (`kaiju.commands` entry
    points; looked up only when `line` asks for help or names no built-in command, as reading
    them means reading every installed distribution's metadata). Raises ConfigError for a
    command that does not import or clashes with another. The config loaded here goes into
    `preloaded`, keyed by its sources, for `load` to reuse."""
    from kaiju.commands import installed_commands, load_command

    found: dict[str, Command] = {}

    def add(ref: str, name: str | None, where: str) -> None:
        try:
            cmd = load_command(ref, name)
        except (ImportError, TypeError) as exc:
            raise ConfigError(f"app command {ref}: {exc}", source=where) from None
        if cmd.name in COMMANDS or cmd.name in found:
            raise ConfigError(
                f'app command "{cmd.name}" ({ref}) clashes with another command of that name', source=where
            )
        found[cmd.name] = Command(cmd.name, cmd.help, functools.partial(run_app_command, cmd), cmd.arguments)

    if line.wants_help or (line.word is not None and line.word not in COMMANDS):
        for name, ref in installed_commands():
            add(ref, name, "entry points (kaiju.commands)")
    known = line.sources
    known.config = known.config or paths_from_env(CONFIG_ENV)
    known.env_file = known.env_file or paths_from_env(ENV_FILE_ENV)
    if known.config:
        try:
            config = load(known)
        except ConfigError:
            config = None
        if config is not None and preloaded is not None:
            preloaded[_sources(known)] = config
        for index, ref in enumerate(config.settings.commands if config else ()):
            add(ref, None, f"{config.source(('commands', index))}: {config.format_path(('commands', index))}")
    return {**COMMANDS, **found}


def run_app_command(cmd: Any, args: argparse.Namespace) -> int:
    """Run an app command: inside the started app (`cmd.start`; without the transports, as
    `call`), else on the loaded config."""
    import asyncio
    import inspect

    if cmd.start:

        async def body(ep: Any) -> int:
            result = cmd.func(ep.app, args)
            if inspect.isawaitable(result):
                result = await result
            return int(result or 0)

        config = load(args)  # the services `call` runs: no HTTP server, listener or schedule
        return run_app(args, body, *_prepare_call(config), config=config, transports=False)
    result = cmd.func(load(args), args)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return int(result or 0)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def main(argv: list[str] | None = None) -> int:
    # the app's own modules are found from where it is run, as with `python -m` (a console
    # script puts only its own folder on the path)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    preloaded: dict[tuple, Any] = {}
    line = _pre_parse(argv)
    try:
        commands = app_commands(line, preloaded)
    except ConfigError as exc:
        print(f"kaiju-run: {exc}", file=sys.stderr)
        return 2
    args = parse(argv, commands, line.word)
    args.preloaded = preloaded
    command = commands[args.command or "run"]
    if not args.config and command.needs_config:
        print("kaiju-run: no config: give at least one -c FILE (or set KAIJU_CONFIG)", file=sys.stderr)
        return 2
    try:
        if args.log_format:
            check_format(args.log_format)
        return command.run(args)
    except (ConfigError, LogFormatError) as exc:
        print(f"kaiju-run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
