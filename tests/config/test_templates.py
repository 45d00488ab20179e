import pytest

from kaiju.config.errors import PathError
from kaiju.config.templates import fill_templates, read_scalar, template_keys


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("[PORT:8080]", 8080),
        ("[DEBUG:false]", False),
        ("[DEBUG:true]", True),
        ("[RATIO:0.5]", 0.5),
        ("[HOST:127.0.0.1]", "127.0.0.1"),
        ("[URL:http://a:1/b]", "http://a:1/b"),
        ("[NOTHING:null]", None),
        ("[NOTHING:~]", None),
        ("[EMPTY:]", ""),
        ("[WORD:hello world]", "hello world"),
        ("[DATE:2024-01-01]", "2024-01-01"),
        ("[PASS:p#ss]", "p#ss"),
        ("[LIST:a, b]", "a, b"),
        ("[MAP:a: b]", "a: b"),
    ],
)
def test_default_takes_the_type_of_a_yaml_scalar(template, expected):
    filled = fill_templates({"value": template}, {})
    assert filled["value"] == expected
    assert type(filled["value"]) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("-3", -3),
        ("1.5e+3", 1500.0),
        ("1e3", "1e3"),
        ("off", False),
        ("NULL", None),
        ("'q'", "'q'"),
        ("[1, 2]", "[1, 2]"),
    ],
)
def test_read_scalar(text, expected):
    assert read_scalar(text) == expected
    assert type(read_scalar(text)) is type(expected)


def test_env_value_overrides_default_and_is_typed():
    filled = fill_templates({"port": "[PORT:8080]", "debug": "[DEBUG:false]"}, {"PORT": "9000", "DEBUG": "yes"})
    assert filled == {"port": 9000, "debug": True}


def test_non_string_env_values_are_used_as_they_are():
    filled = fill_templates({"port": "[PORT]", "hosts": "[HOSTS]"}, {"PORT": 7, "HOSTS": ["a", "b"]})
    assert filled == {"port": 7, "hosts": ["a", "b"]}


def test_template_inside_a_longer_string_is_interpolated_as_text():
    data = {"url": "http://[HOST:localhost]:[PORT:80]/x"}
    assert fill_templates(data, {}) == {"url": "http://localhost:80/x"}
    assert fill_templates(data, {"PORT": "08080", "HOST": "h"}) == {"url": "http://h:08080/x"}


def test_interpolated_json_values_render_as_json():
    assert fill_templates({"s": "debug=[DEBUG]"}, {"DEBUG": True}) == {"s": "debug=true"}


def test_templates_are_filled_everywhere_and_input_is_not_modified():
    data = {"a": [{"b": "[X]"}, "[X]-[Y:y]"], "n": 5, "k": None}
    filled = fill_templates(data, {"X": "1"})
    assert filled == {"a": [{"b": 1}, "1-y"], "n": 5, "k": None}
    assert data["a"][0]["b"] == "[X]"


def test_strings_that_are_not_templates_stay():
    data = {"a": "[a-z]+", "b": "[1]", "c": "[ X ]", "d": "[X-Y]", "e": "plain"}
    assert fill_templates(data, {"X": "1"}) == data


def test_missing_key_without_default_names_the_path():
    with pytest.raises(PathError) as info:
        fill_templates({"services": [{"settings": {"url": "redis://[REDIS_HOST]/0"}}]}, {})
    assert info.value.path == ("services", 0, "settings", "url")
    assert 'template key "REDIS_HOST" has no value and no default' in info.value.message


def test_empty_env_value_is_a_value():
    assert fill_templates({"a": "[A:default]"}, {"A": ""}) == {"a": ""}


def test_template_keys_collects_every_key():
    data = {"a": "[A]", "b": ["x[B:1]y[C]"], "c": {"d": "[D:http://x:1]"}, "e": 1}
    assert template_keys(data) == {"A", "B", "C", "D"}


def test_texts_of_typed_whole_templates_are_recorded():
    texts = {}
    fill_templates({"a": "[A]", "b": ["[B:0.50]"], "c": "[C:null]", "d": "x[A]", "e": "[E:word]"}, {"A": "007"}, texts)
    assert texts == {("a",): "007", ("b", 0): "0.50"}


def test_a_quoted_default_loses_its_quotes_and_stays_text():
    data = {"env": "[main_env:'dev']", "code": '[CODE:"007"]', "url": "redis://[HOST:'db']:6379", "bare": "[N:'']"}
    assert fill_templates(data, {}) == {"env": "dev", "code": "007", "url": "redis://db:6379", "bare": ""}
    assert fill_templates({"env": "[main_env:'dev']"}, {"main_env": "prod"}) == {"env": "prod"}
