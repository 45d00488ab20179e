"""Constrained setting types, the `check()` hook, and services built in Python or by aiomisc."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from aiomisc.service.periodic import PeriodicService

from kaiju.config import ConfigError, load_config_data
from kaiju.rpc.access import Scope
from kaiju.annotations import class_hints, function_hints, join_path, split_validation_error
from kaiju.runtime.entrypoint import Entrypoint
from kaiju.runtime.plan import build_plan
from kaiju.runtime.service import Service
from kaiju.runtime.types import (  # noqa: F401 -- PositiveInt resolves a quoted annotation below
    SCOPE_NAMES,
    CronSpec,
    PositiveInt,
    RedisURL,
    RPCMethodName,
    ScopeName,
    TimeZone,
    check_hook,
)


def convert(value, type_):
    return msgspec.convert({"v": value}, msgspec.defstruct("S", [("v", type_)]), dec_hook=check_hook).v


def test_scope_names_are_the_rpc_scopes():
    assert SCOPE_NAMES == tuple(s.name.lower() for s in sorted(Scope))


@pytest.mark.parametrize(
    "type_, good, bad",
    [
        (ScopeName, ["guest", "SYSTEM", "Admin"], ["superuser", "", 3]),
        (RedisURL, ["redis://h:6379/0", "rediss://u:p@h/1", "unix:///run/redis.sock?db=2"], ["h:6379", "redis://h:99999", "http://h", "redis://"]),
        (CronSpec, ["*/5 * * * *", "0 * * * * 30"], ["61 * * * *", "* * * *", "a b c d e"]),
        (TimeZone, ["UTC", "Europe/Berlin"], ["Mars/Olympus", ""]),
        (RPCMethodName, ["demo.echo", "a.b.c"], ["echo", ".x", "demo.", "de mo.x"]),
    ],
)
def test_checked_strings(type_, good, bad):
    for value in good:
        assert convert(value, type_) == value and isinstance(convert(value, type_), type_)
    for value in bad:
        with pytest.raises(msgspec.ValidationError, match=f"^expected {type_.expected[:20]}"):
            convert(value, type_)


def test_a_redis_password_stays_out_of_the_error():
    with pytest.raises(msgspec.ValidationError) as info:
        convert("redis://:hunter2@h:99999/0", RedisURL)
    assert "hunter2" not in str(info.value) and ":***@" in str(info.value)


def test_split_validation_error_and_join_path():
    assert split_validation_error("Expected `int`, got `str` - at `$.a[2].b`") == ("Expected `int`, got `str`", ("a", 2, "b"), False)
    assert split_validation_error("Expected `str`, got `int` - at `key` in `$.m`") == ("Expected `str`, got `int`", ("m",), True)
    assert split_validation_error("Object missing required field `x`") == ("Object missing required field `x`", (), False)
    assert join_path(("a", 2, "b")) == "a[2].b" and join_path((0, "x")) == "[0].x" and join_path(()) == ""


class Hinted(Service):
    port: int = 1
    missing: "NoSuchName" = None  # noqa: F821 -- an unresolvable annotation becomes Any


async def hinted(a: int, b: "NoSuchName") -> str:  # noqa: F821
    return ""


def test_hints_resolve_what_they_can():
    from typing import Any

    hints = class_hints(Hinted, Service)
    assert hints["port"] is int and hints["missing"] is Any
    assert function_hints(hinted) == {"a": int, "b": Any, "return": str}


class OnlyMethods(Service):
    """Exposes methods and needs no start of its own."""


async def test_a_service_needs_no_start_of_its_own():
    await OnlyMethods().start()  # aiomisc's start is abstract; kaiju's does nothing
    assert OnlyMethods().name == "OnlyMethods"


class Limits(Service):
    low: int = 1
    high: int = 10

    def check(self) -> None:
        from kaiju.runtime.service import SettingError

        if self.low > self.high:
            raise SettingError("low", f"expected at most high ({self.high}), got {self.low}")


def test_the_hook_names_the_setting_in_config_and_in_python():
    data = {"main": {"name": "t"}, "services": [{"cls": "tests.runtime.test_types:Limits", "name": "lim", "settings": {"low": 11}}]}
    with pytest.raises(ConfigError) as info:
        build_plan(load_config_data(data, source="conf/app.yml", os_env=False))
    assert str(info.value) == "conf/app.yml: services[lim].settings.low: expected at most high (10), got 11"
    with pytest.raises(ConfigError) as info:
        build_plan(None, [Limits(name="lim", low=11)])
    assert str(info.value) == "<python>: services[lim].settings.low: expected at most high (10), got 11"


def test_a_service_built_in_python_is_validated_like_config():
    with pytest.raises(ConfigError) as info:
        build_plan(None, [Limits(name="lim", low="one")])
    assert str(info.value) == '<python>: services[lim].settings.low: expected int, got "one"'


class Beat(PeriodicService):
    """An aiomisc PeriodicService, not a kaiju one."""

    async def callback(self):
        self.beats = getattr(self, "beats", 0) + 1


class NeedsBeat(Service):
    beat: Beat

    async def start(self) -> None:
        self.saw_interval = self.beat.interval


async def test_an_aiomisc_service_from_python_joins_the_plan_and_runs():
    beat = Beat(interval=0.01)
    user = NeedsBeat()
    ep = Entrypoint(beat, user, catch_signals=(), log_config=False, os_env=False)
    assert ep.plan.layers == [["Beat"], ["NeedsBeat"]]
    async with ep:
        assert user.saw_interval == 0.01
        for _ in range(500):
            if getattr(beat, "beats", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        assert beat.beats >= 2, "the aiomisc service ran"


def test_an_aiomisc_service_misses_a_required_setting():
    data = {"main": {"name": "t"}, "services": [{"cls": "tests.runtime.test_types:Beat"}]}
    with pytest.raises(ConfigError) as info:
        build_plan(load_config_data(data, source="conf/app.yml", os_env=False))
    assert str(info.value) == "conf/app.yml: services[tests.runtime.test_types:Beat].settings.interval: required key missing"


async def constrained(n: "PositiveInt") -> None:
    return None


def test_function_hints_keep_constraints():
    from kaiju.runtime.types import PositiveInt

    assert function_hints(constrained)["n"] == PositiveInt
