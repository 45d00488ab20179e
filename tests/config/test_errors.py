import pickle

import pytest

from kaiju.config import ConfigError
from kaiju.config.errors import describe_value, format_path
from kaiju.config.settings import parse_msgspec_path, validation_problem


def test_config_error_str_omits_empty_parts():
    assert str(ConfigError("m", source="a.yml", path="main.name")) == "a.yml: main.name: m"
    assert str(ConfigError("m", source="a.yml")) == "a.yml: m"
    assert str(ConfigError("m", path="main")) == "main: m"
    assert str(ConfigError("m")) == "m"


def test_config_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ConfigError("m", source="a.yml", path="p")))
    assert (error.source, error.path, error.message) == ("a.yml", "p", "m")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("services", 0, "settings", "port"), "services[http].settings.port"),
        (("services", 1), "services[Echo]"),
        (("services", 2), "services[2]"),
        (("services", 7), "services[7]"),
        (("etc", "list", 3), "etc.list[3]"),
        (("etc", "a.b", "c d"), 'etc["a.b"]["c d"]'),
        (("etc", 1), "etc[1]"),
        ((), ""),
    ],
)
def test_format_path(path, expected):
    data = {"services": [{"cls": "A", "name": "http"}, "Echo", {"settings": {}}], "etc": {"list": [0, 1, 2, 3]}}
    assert format_path(path, data) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [("abc", '"abc"'), (1, "1"), (1.5, "1.5"), (True, "true"), (None, "null"), ({}, "a mapping"), ([], "a list")],
)
def test_describe_value(value, text):
    assert describe_value(value) == text


def test_parse_msgspec_path():
    assert parse_msgspec_path("$.services[0].settings.port") == ("services", 0, "settings", "port")
    assert parse_msgspec_path("$") == ()


def test_validation_problem_maps_msgspec_messages():
    data = {"services": [{"cls": "A", "name": "http", "settings": {"port": "abc"}}]}
    assert validation_problem("Expected `int`, got `str` - at `$.services[0].settings.port`", data) == (
        ("services", 0, "settings", "port"),
        'expected int, got "abc"',
    )
    assert validation_problem("Object missing required field `cls` - at `$.services[0]`", data) == (
        ("services", 0, "cls"),
        "required key missing",
    )
    assert validation_problem("Expected `object`, got `array`", []) == ((), "expected mapping, got a list")


@pytest.mark.parametrize(
    "key, hint",
    [("app", "main.debug"), ("run", "settings of an HTTPServer service")],
)
def test_kaiju_tools_sections_say_where_their_settings_went(key, hint):
    from kaiju.config import ConfigError, load_config_data

    with pytest.raises(ConfigError) as info:
        load_config_data({"main": {"name": "t"}, key: {"debug": True, "port": 80}}, source="app.yml", os_env=False)
    assert str(info.value).startswith(f"app.yml: {key}: unknown key (kaiju-tools'") and hint in str(info.value)
