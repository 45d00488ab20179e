"""The `kaiju-run openrpc` and `kaiju-run client` commands: an app's OpenRPC document, built
from its config without starting it, and the typed clients made from it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["app_document", "client_arguments", "cmd_client", "cmd_openrpc", "openrpc_arguments"]

LANGUAGES = ("python", "typescript")


def app_document(loaded: Any, scope_name: str) -> dict[str, Any]:
    """The OpenRPC document of the app `loaded` (a LoadedConfig) describes, as `rpc.discover`
    answers a caller of `scope_name`; raises ValueError for an unknown scope, ConfigError for a
    bad config."""
    from kaiju.rpc.access import parse_scope
    from kaiju.rpc.openrpc import openrpc_document
    from kaiju.rpc.server import RPCServer
    from kaiju.runtime.plan import build_plan

    scope = parse_scope(scope_name)
    app = build_plan(loaded).app
    servers = [s for s in app.services.values() if isinstance(s, RPCServer)]
    rpc = servers[0] if servers else RPCServer(app=app)
    for service in app.services.values():
        rpc.add_service(service)
    return openrpc_document(
        rpc.list_methods(scope), title=app.name, version=app.version, topics=rpc.topic_rules.describe(scope)
    )


def openrpc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scope",
        default="user",
        metavar="NAME",
        help="describe what a caller of this scope may call (system, admin, user, guest; default: user)",
    )


def client_arguments(p: argparse.ArgumentParser) -> None:
    openrpc_arguments(p)
    p.add_argument("--lang", required=True, choices=LANGUAGES, help="the client's language")
    p.add_argument("-o", "--output", metavar="FILE", help="write the client here (default: standard output)")


def _document(args: argparse.Namespace, loaded: Any) -> dict[str, Any] | None:
    try:
        return app_document(loaded, args.scope)
    except ValueError as exc:
        print(f"kaiju-run: --scope: {exc}", file=sys.stderr)
        return None


def cmd_openrpc(args: argparse.Namespace, loaded: Any) -> int:
    """Print the OpenRPC document of the app `loaded` (the command line's config) describes."""
    document = _document(args, loaded)
    if document is None:
        return 2
    print(json.dumps(document, indent=2))
    return 0


def cmd_client(args: argparse.Namespace, loaded: Any) -> int:
    """Write the typed client of the app `loaded` (the command line's config) describes."""
    document = _document(args, loaded)
    if document is None:
        return 2
    if args.lang == "python":
        from kaiju.clients.python import python_client

        source = python_client(document)
    else:
        from kaiju.clients.typescript import typescript_client

        source = typescript_client(document)
    if not args.output:
        sys.stdout.write(source)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(source)
    except OSError as exc:
        print(f"kaiju-run: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(document['methods'])} methods)", file=sys.stderr)
    return 0
