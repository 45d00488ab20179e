import pytest

from kaiju.config import ConfigError
from kaiju.config.sources import parse_env_assignment, parse_env_text, read_env_file
from kaiju.config.sources import read_yaml_file


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()


def write(name, text):
    with open(name, "w", encoding="utf-8") as f:
        f.write(text)
    return name


def error_of(func, *args):
    with pytest.raises(ConfigError) as info:
        func(*args)
    return str(info.value)


def test_env_text_formats():
    text = """
# a comment
   # an indented comment

export A=1
B = spaced value   # trailing comment
C="x=\\"y\\"\\n#z"
D='literal \\n #kept'
E=a=b=c
F=
G="" # empty
H=p#ss
"""
    assert parse_env_text(text) == {
        "A": "1",
        "B": "spaced value",
        "C": 'x="y"\n#z',
        "D": "literal \\n #kept",
        "E": "a=b=c",
        "F": "",
        "G": "",
        "H": "p#ss",
    }


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("A=1\nnot an assignment\n", 2, "expected KEY=VALUE (KEY: letters, digits, _)"),
        ("A=1\n\n1A=2\n", 3, "expected KEY=VALUE (KEY: letters, digits, _)"),
        ('A="open\n', 1, 'unterminated " quote'),
        ("A='x' y\n", 1, "unexpected text after the closing quote: 'y'"),
    ],
)
def test_bad_env_line_names_file_and_line(text, line, message):
    write("conf/app.env", text)
    assert error_of(read_env_file, "conf/app.env") == f"conf/app.env: line {line}: {message}"


def test_json_env_file():
    write("conf/env.json", '{"PORT": 81, "HOST": "h", "DEBUG": true}')
    assert read_env_file("conf/env.json") == {"PORT": 81, "HOST": "h", "DEBUG": True}


def test_json_env_file_detected_by_content():
    write("conf/env", '  {"A": "1"}')
    assert read_env_file("conf/env") == {"A": "1"}


def test_bad_json_env_file():
    write("conf/env.json", '{\n"A": 1,\n}')
    expected = "conf/env.json: line 3: Expecting property name enclosed in double quotes"
    assert error_of(read_env_file, "conf/env.json") == expected
    write("conf/list.json", "[1]")
    assert error_of(read_env_file, "conf/list.json") == "conf/list.json: expected a JSON object, got a list"


def test_missing_files():
    assert error_of(read_env_file, "conf/none.env") == "conf/none.env: file not found"
    assert error_of(read_yaml_file, "conf/none.yml") == "conf/none.yml: file not found"
    assert error_of(read_yaml_file, "conf") == "conf: is a directory, expected a file"


def test_yaml_syntax_error_names_the_line():
    write("conf/app.yml", "main:\n  name: demo\n\nservices: x: y\n")
    assert error_of(read_yaml_file, "conf/app.yml") == "conf/app.yml: line 4: mapping values are not allowed here"


def test_yaml_duplicate_key_is_an_error():
    write("conf/app.yml", "main:\n  name: a\n  name: b\n")
    assert error_of(read_yaml_file, "conf/app.yml") == 'conf/app.yml: line 3: duplicate key "name" (first on line 2)'


def test_yaml_merge_keys_may_be_overridden():
    write("conf/app.yml", "base: &b {x: 1, y: 2}\netc:\n  <<: *b\n  y: 3\n")
    assert read_yaml_file("conf/app.yml")["etc"] == {"x": 1, "y": 3}


def test_yaml_top_level_must_be_a_mapping():
    write("conf/app.yml", "- a\n- b\n")
    assert error_of(read_yaml_file, "conf/app.yml") == "conf/app.yml: expected a mapping at the top level, got a list"


def test_empty_yaml_is_an_empty_mapping():
    write("conf/app.yml", "# nothing yet\n")
    assert read_yaml_file("conf/app.yml") == {}


def test_yaml_python_tags_are_refused():
    write("conf/app.yml", "a: !!python/object/apply:os.system ['true']\n")
    assert error_of(read_yaml_file, "conf/app.yml").startswith("conf/app.yml: line 1: ")


def test_parse_env_assignment_splits_on_the_first_equals():
    assert parse_env_assignment("K=V=W") == ("K", "V=W")
    assert parse_env_assignment("K=") == ("K", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("KV", '-e: expected KEY=VALUE, got "KV"'),
        ("=V", '-e: expected KEY=VALUE with KEY made of letters, digits and _, got ""'),
        ("A-B=1", '-e: expected KEY=VALUE with KEY made of letters, digits and _, got "A-B"'),
    ],
)
def test_parse_env_assignment_errors(text, message):
    assert error_of(parse_env_assignment, text) == message
