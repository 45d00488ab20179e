"""TopicRules: who may subscribe to which patterns, and receive which topics."""

from __future__ import annotations

import pytest

from kaiju.rpc import RPCServer, Scope
from kaiju.rpc.topics import TopicRules
from kaiju.runtime.service import SettingError

RULES = TopicRules({"news.*": "guest", "news.secret.*": "admin", "orders.*": "user"})


@pytest.mark.parametrize(
    "pattern, scope, allowed",
    [
        ("news.*", Scope.GUEST, True),
        ("news.sport", Scope.GUEST, True),
        ("news.secret.*", Scope.GUEST, False),
        ("news.secret.*", Scope.ADMIN, True),
        ("news.secret.x", Scope.USER, False),
        ("orders.*", Scope.GUEST, False),
        ("orders.[0-9]", Scope.USER, True),
        ("*", Scope.SYSTEM, False),
        ("weather", Scope.SYSTEM, False),
    ],
)
def test_may_subscribe(pattern, scope, allowed):
    assert RULES.may_subscribe(pattern, scope) is allowed


def test_the_strictest_matching_pattern_decides_delivery():
    assert RULES.may_receive("news.sport", Scope.GUEST)
    assert not RULES.may_receive("news.secret.plan", Scope.USER)
    assert RULES.may_receive("news.secret.plan", Scope.ADMIN)
    assert not RULES.may_receive("weather.today", Scope.SYSTEM)  # declared by nobody


def test_without_permissions_every_declared_topic_is_anyones():
    rules = TopicRules({"orders.*": "admin"}, enabled=False)
    assert rules.may_subscribe("orders.*", Scope.GUEST) and rules.may_receive("orders.1", Scope.GUEST)
    assert not rules.may_subscribe("other", Scope.GUEST)


def test_describe_lists_what_a_scope_may_have():
    assert RULES.describe(Scope.USER) == [
        {"pattern": "news.*", "scope": "guest"},
        {"pattern": "orders.*", "scope": "user"},
    ]


def test_a_bad_pattern_is_a_setting_error():
    with pytest.raises(SettingError, match="patterns of 1-256 characters") as err:
        RPCServer(topics={"x" * 300: "guest"})
    assert err.value.key == "topics"
