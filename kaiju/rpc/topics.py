"""Who may subscribe to which events, and the `rpc.subscribe` / `rpc.unsubscribe` methods.

`RPCServer`'s setting `topics: {PATTERN: SCOPE}` declares the topics a client may subscribe
to (shell-style patterns, as `rpc.api` takes) and the least privileged scope that may
(nothing declared: nothing may be subscribed). Two checks keep a client to its topics:

- at `rpc.subscribe`, its pattern must lie under a declared pattern (the pattern, read as a
  topic name, matches the declared one: `orders.*` and `orders.7` lie under `orders.*`; `*`
  does not), and every declared pattern it lies under must allow the caller's scope;
- at delivery, a topic reaches a connection only when every declared pattern matching the
  topic allows the connection's scope at that moment (the strictest one decides), so a
  pattern that slips past the first check, or a caller whose session ended since, receives
  nothing it may not.

A transport able to push (the WebSocket endpoint) sets `current_channel` around each call,
so the methods reach the connection they were called on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from fnmatch import translate
from typing import Annotated, Any, NamedTuple, Protocol

from msgspec import Meta

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, parse_scope
from kaiju.rpc.context import current
from kaiju.rpc.methods import method

__all__ = ["MAX_PATTERN", "Channel", "Subscriptions", "TopicRules", "compile_pattern", "current_channel"]

MAX_PATTERN = 256  # characters of a subscribed or declared pattern, as rpc.api's
# a declared pattern: what a topic may hold (kaiju.events.base), and fnmatch's wildcards
_DECLARED = re.compile(r"[\w.:/@\-*?\[\]!]+")
_CACHED_TOPICS = 4096  # topics whose strictest scope is remembered (then forgotten all at once)


def compile_pattern(pattern: str) -> Any:
    """The `match` of a shell-style pattern (re's bounded cache, not fnmatch's unbounded one)."""
    return re.compile(translate(pattern)).match


class Rule(NamedTuple):
    pattern: str
    match: Any
    scope: Scope


class TopicRules:
    """The `topics` setting, compiled: `{pattern: scope}` (ValueError naming a bad entry);
    with `enabled` false (RPCServer's `enable_permissions: false`) any caller may have any
    declared topic."""

    def __init__(self, topics: Mapping[str, Scope | int | str], enabled: bool = True):
        rules = []
        for pattern, scope in topics.items():
            if not pattern or len(pattern) > MAX_PATTERN:
                raise ValueError(f"expected patterns of 1-{MAX_PATTERN} characters, got {pattern!r}")
            if not _DECLARED.fullmatch(pattern):  # a space, say: no topic could ever match it
                raise ValueError(
                    "expected patterns of a topic's characters (letters, digits and _ . : / @ -) "
                    f"and * ? [ ] !, got {pattern!r}"
                )
            rules.append(Rule(pattern, compile_pattern(pattern), parse_scope(scope)))
        self.rules = tuple(rules)
        self.enabled = enabled
        self._strictest: dict[str, Scope | None] = {}

    def may_subscribe(self, pattern: str, scope: Scope) -> bool:
        """Whether a caller of `scope` may subscribe to `pattern`: it lies under a declared
        pattern the caller may use, and under none the caller may not (the strictest decides)."""
        under = [r for r in self.rules if pattern == r.pattern or r.match(pattern)]
        return bool(under) and all(scope <= r.scope or not self.enabled for r in under)

    def strictest(self, topic: str) -> Scope | None:
        """The most privileged scope among the declared patterns matching `topic` (None: none matches)."""
        found = self._strictest.get(topic, False)
        if found is False:
            scopes = [r.scope for r in self.rules if r.match(topic)]
            found = min(scopes) if scopes else None
            if len(self._strictest) >= _CACHED_TOPICS:
                self._strictest.clear()
            self._strictest[topic] = found
        return found  # type: ignore[return-value]

    def may_receive(self, topic: str, scope: Scope) -> bool:
        """Whether a connection of `scope` may be sent the events of `topic`."""
        needed = self.strictest(topic)
        return needed is not None and (scope <= needed or not self.enabled)

    def describe(self, scope: Scope = Scope.SYSTEM) -> list[dict[str, str]]:
        """The declared patterns a caller of `scope` may subscribe to, with their scopes."""
        return [
            {"pattern": r.pattern, "scope": r.scope.name.lower()}
            for r in self.rules
            if scope <= r.scope or not self.enabled
        ]


class Channel(Protocol):
    """A connection that can be pushed events (the WebSocket endpoint's)."""

    def subscribe(self, pattern: str) -> None:
        """Start sending the events of `pattern`; raises an RPCError to refuse."""

    def unsubscribe(self, pattern: str) -> bool:
        """Stop sending the events of `pattern`; whether it was subscribed."""


# the connection the current call came in on, when it can be pushed to (set by its transport)
current_channel: ContextVar[Channel | None] = ContextVar("kaiju_rpc_channel", default=None)


class Subscriptions:
    """`rpc.subscribe` and `rpc.unsubscribe`, over the rules `rules()` gives."""

    def __init__(self, rules: Any):
        self.rules = rules  # a callable: the server's current TopicRules

    @staticmethod
    def _channel() -> Channel:
        channel = current_channel.get()
        if channel is None:
            raise E.InvalidRequest(
                "Invalid request: subscriptions need a connection the server can push to (the WebSocket endpoint)"
            )
        return channel

    @method(permission=Scope.GUEST)
    async def subscribe(self, topic: Annotated[str, Meta(min_length=1, max_length=MAX_PATTERN)]) -> dict:
        """Receive the events whose topic matches `topic` (a shell-style pattern, at most 256
        characters) on this connection, as JSON-RPC notifications named after the topic."""
        channel = self._channel()
        ctx = current()
        scope = ctx.scope if ctx is not None else Scope.SYSTEM
        if not self.rules().may_subscribe(topic, scope):
            raise E.PermissionDenied(f"Permission denied: no subscription to {topic!r} for this caller")
        channel.subscribe(topic)
        return {"topic": topic, "subscribed": True}

    @method(permission=Scope.GUEST)
    async def unsubscribe(self, topic: Annotated[str, Meta(min_length=1, max_length=MAX_PATTERN)]) -> dict:
        """Stop receiving the events of a pattern `rpc.subscribe` was given."""
        return {"topic": topic, "subscribed": False, "was_subscribed": self._channel().unsubscribe(topic)}
