"""`kaiju-run tasks ...` and `kaiju-run streams ...`: control a running app from the shell.

    kaiju-run -c app.yml tasks list                       every task: schedule, state, last run anywhere
    kaiju-run -c app.yml tasks history NAME [--count N]   its last runs, newest first
    kaiju-run -c app.yml tasks pause NAME                 paused in every process, until resumed
    kaiju-run -c app.yml tasks resume NAME
    kaiju-run -c app.yml tasks run NAME                   run once now, by one process of the app
    kaiju-run -c app.yml streams dead TOPIC [--count N]   its dead letters, one JSON line each
    kaiju-run -c app.yml streams replay TOPIC (--id ID ... | --all)
    kaiju-run -c app.yml streams purge TOPIC [--before TIME]

Each starts the app as `kaiju-run call` does, without its transports (no HTTP server, no
listener, no schedule), and calls the `tasks.*` or `streams.*` method: they act on the
shared store (Redis), so every running process of the app sees what they change. The
config needs the `Tasks` (resp. `Streams`) service; exit status 2 when it has none.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["Call", "cmd_streams", "cmd_tasks", "streams_arguments", "tasks_arguments"]

# How a command calls a method in the app started without its transports: (args, method,
# params, lines) -> exit status; `kaiju.cli` gives it (it owns the app's start).
Call = Callable[[argparse.Namespace, str, dict[str, Any], bool], int]


def tasks_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every task: schedule, state, next run here, last run anywhere")
    history = actions.add_parser("history", help="the last runs of a task, newest first")
    history.add_argument("name", metavar="NAME")
    history.add_argument("--count", type=int, default=20, help="runs to show (at most 50; default 20)")
    for action, text in (
        ("pause", "pause a task in every process of the app, until resumed"),
        ("resume", "resume a paused task in every process of the app"),
        ("run", "run a task once now, by one process of the app"),
    ):
        actions.add_parser(action, help=text).add_argument("name", metavar="NAME")


def cmd_tasks(args: argparse.Namespace, call: Call) -> int:
    if args.action == "list":
        return call(args, "tasks.list", {}, False)
    if args.action == "history":
        return call(args, "tasks.history", {"name": args.name, "count": args.count}, False)
    method = {"pause": "tasks.pause", "resume": "tasks.resume", "run": "tasks.run_now"}[args.action]
    return call(args, method, {"name": args.name}, False)


def streams_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    dead = actions.add_parser("dead", help="the dead letters of a topic, one JSON line each, oldest first")
    dead.add_argument("topic", metavar="TOPIC")
    dead.add_argument("--count", type=int, default=1000, help="dead letters to list (default 1000)")
    replay = actions.add_parser("replay", help="put dead letters back on their topic, each once")
    replay.add_argument("topic", metavar="TOPIC")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", action="append", metavar="ID", help="a dead letter's id; repeatable")
    which.add_argument("--all", action="store_true", help="every dead letter of the topic")
    purge = actions.add_parser("purge", help="drop dead letters (all of them, or those before a time)")
    purge.add_argument("topic", metavar="TOPIC")
    purge.add_argument("--before", metavar="TIME", help="an ISO 8601 time or unix seconds")
    for action in (dead, replay, purge):
        action.add_argument("--shared", action="store_true", help="the topic of the env's shared namespace")


def cmd_streams(args: argparse.Namespace, call: Call) -> int:
    common = {"topic": args.topic, "shared": args.shared}
    if args.action == "dead":
        return call(args, "streams.dead", {**common, "count": args.count}, True)
    if args.action == "replay":
        params = {**common, "ids": args.ids} if args.ids else {**common, "all": True}
        return call(args, "streams.replay", params, False)
    return call(args, "streams.purge", {**common, "before": _time(args.before)}, False)


def _time(text: str | None) -> str | float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text  # an ISO time: the method says when it is neither
