import pytest

from kaiju.config import ConfigError, ProjectSettings, ServiceSettings, load_config, load_config_data


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    for key in ("KJ_PORT", "KJ_HOST", "KJ_DEBUG", "KJ_ENV", "KJ_NAME"):
        monkeypatch.delenv(key, raising=False)


def write(name, text):
    with open(name, "w", encoding="utf-8") as f:
        f.write(text)
    return name


def error_of(*args, **kwargs):
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


APP = """
main:
  name: demo
  env: "[KJ_ENV:dev]"
packages: [myapp.services]
services:
  - cls: HTTPServer
    name: http
    loglevel: debug
    start_timeout: 5
    settings:
      port: "[KJ_PORT:8080]"
      host: "[KJ_HOST:127.0.0.1]"
  - EchoService
etc:
  url: "http://[KJ_HOST:localhost]:[KJ_PORT:80]/x"
"""


def test_a_full_config_loads_into_typed_settings():
    config = load_config([write("conf/app.yml", APP)])
    settings = config.settings
    assert isinstance(settings, ProjectSettings)
    assert settings.main.name == "demo"
    assert settings.main.env == "dev"
    assert settings.main.loglevel == "INFO"
    assert settings.main.shutdown_timeout == 30.0
    assert settings.packages == ["myapp.services"]
    assert settings.services == [
        ServiceSettings(
            cls="HTTPServer",
            name="http",
            loglevel="DEBUG",
            start_timeout=5.0,
            settings={"port": 8080, "host": "127.0.0.1"},
        ),
        ServiceSettings(cls="EchoService"),
    ]
    assert settings.etc == {"url": "http://localhost:80/x"}
    assert config.data["services"][1] == {"cls": "EchoService"}
    assert config.files == ("conf/app.yml",)


def test_precedence_files_then_env_files_then_os_env_then_explicit(monkeypatch):
    write(
        "conf/app.yml",
        'main: {name: demo}\netc: {a: "[A:file]", b: "[B:file]", c: "[C:file]", d: "[D:file]", e: "[E:file]"}\n',
    )
    write("conf/one.env", "B=env1\nC=env1\nD=env1\nE=env1\n")
    write("conf/two.json", '{"C": "env2", "D": "env2", "E": "env2"}')
    monkeypatch.setenv("D", "os")
    monkeypatch.setenv("E", "os")
    config = load_config(["conf/app.yml"], env_files=["conf/one.env", "conf/two.json"], env={"E": "explicit"})
    assert config.data["etc"] == {"a": "file", "b": "env1", "c": "env2", "d": "os", "e": "explicit"}
    assert config.env_files == ("conf/one.env", "conf/two.json")


def test_os_env_can_be_turned_off(monkeypatch):
    write("conf/app.yml", 'main: {name: "[KJ_NAME:file]"}\n')
    monkeypatch.setenv("KJ_NAME", "from_os")
    assert load_config(["conf/app.yml"]).settings.main.name == "from_os"
    assert load_config(["conf/app.yml"], os_env=False).settings.main.name == "file"


def test_later_files_override_earlier_ones():
    write("conf/base.yml", APP)
    write(
        "conf/prod.yml",
        "main: {env: prod, debug: true}\npackages: [other]\n"
        "services:\n  - {name: http, settings: {port: 9000}}\n  - {cls: EchoService, enabled: false}\n  - Extra\n",
    )
    settings = load_config(["conf/base.yml", "conf/prod.yml"]).settings
    assert (settings.main.name, settings.main.env, settings.main.debug) == ("demo", "prod", True)
    assert settings.packages == ["other"]
    assert [(s.cls, s.name, s.enabled) for s in settings.services] == [
        ("HTTPServer", "http", True),
        ("EchoService", None, False),
        ("Extra", None, True),
    ]
    assert settings.services[0].settings == {"port": 9000, "host": "127.0.0.1"}


def test_dicts_and_files_mix():
    write("conf/app.yml", APP)
    config = load_config(["conf/app.yml", {"main": {"env": "test"}}])
    assert config.settings.main.env == "test"
    assert config.files == ("conf/app.yml", "<python>")


def test_load_config_data_from_python():
    config = load_config_data({"main": {"name": "py"}, "services": ["A"]}, env={"X": "1"})
    assert config.settings.main.name == "py"
    assert config.settings.services == [ServiceSettings(cls="A")]
    with pytest.raises(ConfigError) as info:
        load_config_data({"main": {"name": "py", "debug": "[DEBUG]"}}, os_env=False)
    assert str(info.value).startswith('<python>: main.debug: template key "DEBUG" has no value')


def test_load_config_data_rejects_a_non_mapping():
    with pytest.raises(ConfigError) as info:
        load_config_data(["main"], source="app.py")
    assert str(info.value) == "app.py: expected a mapping at the top level, got a list"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("main: {}\n", "conf/app.yml: main.name: required key missing"),
        ("etc: {}\n", "conf/app.yml: main: required key missing"),
        ("main: {name: a, nmae: b}\n", "conf/app.yml: main.nmae: unknown key (did you mean name?)"),
        ("main: {name: a}\nextra: 1\n", "conf/app.yml: extra: unknown key"),
        ("main: {name: a, debug: maybe}\n", 'conf/app.yml: main.debug: expected bool, got "maybe"'),
        ("main: {name: a, version: 1.0}\n", "conf/app.yml: main.version: expected str, got 1.0"),
        (
            "main: {name: a, loglevel: loud}\n",
            'conf/app.yml: main.loglevel: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got "loud"',
        ),
        ("main: {name: a, shutdown_timeout: 0}\n", "conf/app.yml: main.shutdown_timeout: expected float > 0.0, got 0"),
        ("main: {name: ''}\n", 'conf/app.yml: main.name: expected a non-empty str, got ""'),
        ("main: [a]\n", "conf/app.yml: main: expected mapping, got a list"),
        ("main: {name: a}\npackages: a.b\n", 'conf/app.yml: packages: expected list, got "a.b"'),
        (
            "main: {name: a}\nservices: [{cls: A, name: http, settings: [1]}]\n",
            "conf/app.yml: services[http].settings: expected mapping, got a list",
        ),
        (
            "main: {name: a}\nservices: [{cls: A, name: http, start_timeout: abc}]\n",
            'conf/app.yml: services[http].start_timeout: expected float or null, got "abc"',
        ),
        ("main: {name: a}\nservices: [{cls: A, prot: 1}]\n", "conf/app.yml: services[A].prot: unknown key"),
        ("main: {name: a}\nservices: [A, 5]\n", "conf/app.yml: services[1]: expected mapping, got 5"),
        ("main: {name: a}\nservices: [{name: http}]\n", "conf/app.yml: services[http].cls: required key missing"),
        ("main: {name: a}\nservices: {cls: A}\n", "conf/app.yml: services: expected a list, got a mapping"),
        ("main: {name: a}\netc: {1: x}\n", "conf/app.yml: etc: keys must be strings"),
    ],
)
def test_each_validation_error_names_file_path_and_expectation(text, message):
    write("conf/app.yml", text)
    assert error_of(["conf/app.yml"], os_env=False) == message


def test_duplicate_service_name_in_one_file():
    write("conf/app.yml", "main: {name: a}\nservices:\n  - {cls: A, name: x}\n  - {cls: B, name: x}\n")
    assert error_of(["conf/app.yml"]).startswith('conf/app.yml: services[x]: duplicate service name "x"')


def test_error_names_the_file_that_set_the_key():
    write("conf/base.yml", "main: {name: a}\nservices: [{cls: A, name: http, settings: {port: 1}}]\n")
    write("conf/over.yml", "main: {loglevel: noisy}\n")
    assert error_of(["conf/base.yml", "conf/over.yml"]).startswith("conf/over.yml: main.loglevel: expected one of")
    write("conf/over.yml", "services: [{name: http, start_timeout: -1}]\n")
    expected = "conf/over.yml: services[http].start_timeout: expected float > 0.0, got -1"
    assert error_of(["conf/base.yml", "conf/over.yml"]) == expected


def test_missing_template_names_the_file_where_it_stands():
    write("conf/base.yml", "main: {name: a}\n")
    write("conf/over.yml", "services: [{cls: A, name: db, settings: {url: 'redis://[KJ_HOST]/0'}}]\n")
    message = error_of(["conf/base.yml", "conf/over.yml"], os_env=False)
    expected = 'conf/over.yml: services[db].settings.url: template key "KJ_HOST" has no value and no default'
    assert message.startswith(expected)


def test_a_typed_template_value_that_does_not_fit_is_reported_at_its_key():
    write("conf/app.yml", 'main: {name: a, debug: "[KJ_DEBUG:false]"}\n')
    expected = 'conf/app.yml: main.debug: expected bool, got "sometimes" (KJ_DEBUG from the env values given)'
    assert error_of(["conf/app.yml"], env={"KJ_DEBUG": "sometimes"}) == expected


def test_source_errors_are_config_errors():
    assert error_of(["conf/missing.yml"]) == "conf/missing.yml: file not found"
    write("conf/app.yml", "main: {name: a}\n")
    write("conf/bad.env", "oops\n")
    expected = "conf/bad.env: line 1: expected KEY=VALUE (KEY: letters, digits, _)"
    assert error_of(["conf/app.yml"], env_files=["conf/bad.env"]) == expected


def test_loaded_config_locates_keys_for_later_errors():
    write("conf/base.yml", APP)
    write("conf/over.yml", "services: [{name: http, settings: {port: abc}}]\n")
    config = load_config(["conf/base.yml", "conf/over.yml"])
    error = config.error(("services", 0, "settings", "port"), 'expected int, got "abc"')
    assert str(error) == 'conf/over.yml: services[http].settings.port: expected int, got "abc"'
    assert error.source == "conf/over.yml"
    assert error.path == "services[http].settings.port"
    assert error.message == 'expected int, got "abc"'
    assert config.source(("services", "http", "settings", "host")) == "conf/base.yml"
    assert config.source(("services", 1)) == "conf/base.yml"
    assert config.source(("services", "EchoService", "cls")) == "conf/base.yml"
    assert config.source(("nowhere",)) == "conf/base.yml"
    assert config.format_path(("services", 1, "settings")) == "services[EchoService].settings"
    assert config.format_path(("etc", "list", 3)) == "etc.list[3]"


def test_one_path_given_bare_is_accepted():
    write("conf/app.yml", "main: {name: a}\n")
    assert load_config("conf/app.yml").files == ("conf/app.yml",)


def test_no_config_at_all_is_an_error():
    assert error_of([]) == "no config given: name at least one config file (-c FILE)"


def test_a_string_setting_gets_the_template_text_back():
    write("conf/app.yml", 'main: {name: "[KJ_NAME]", version: "[KJ_VERSION:1.10]", debug: "[KJ_DEBUG:true]"}\n')
    main = load_config(["conf/app.yml"], env={"KJ_NAME": "007"}, os_env=False).settings.main
    assert (main.name, main.version, main.debug) == ("007", "1.10", True)


def test_template_texts_are_kept_for_service_settings():
    import msgspec

    from kaiju.config.settings import convert_with_texts

    class Redis(msgspec.Struct):
        password: str
        db: int

    write(
        "conf/app.yml",
        "main: {name: a}\nservices:\n  - {cls: R, settings: {password: '[KJ_PW]', db: '[KJ_DB:1]'}}\n",
    )
    config = load_config(["conf/app.yml"], env={"KJ_PW": "123456"}, os_env=False)
    assert config.data["services"][0]["settings"] == {"password": 123456, "db": 1}
    texts = config.texts_under(("services", "R", "settings"))
    assert texts == {("password",): "123456", ("db",): "1"}
    settings = config.data["services"][0]["settings"]
    assert convert_with_texts(settings, Redis, texts) == Redis(password="123456", db=1)
    with pytest.raises(msgspec.ValidationError):
        convert_with_texts(settings, Redis, {})


def test_a_kaiju_tools_env_key_no_template_uses_is_refused():
    write("conf/app.yml", 'main: {name: a, env: "[ENV:dev]"}\n')
    write("conf/env.json", '{"main_env": "prod"}')
    message = error_of(["conf/app.yml"], env_files=["conf/env.json"])
    assert message.startswith("conf/env.json: main_env is kaiju-tools' value for main.env") and '[main_env:dev]' in message
    write("conf/app.yml", 'main: {name: a, env: "[main_env:dev]"}\n')
    assert load_config(["conf/app.yml"], env_files=["conf/env.json"]).settings.main.env == "prod"


def test_a_bad_value_says_which_env_file_it_came_from():
    write("conf/app.yml", 'main: {name: a, debug: "[KJ_DEBUG:false]"}\n')
    write("conf/app.env", "KJ_DEBUG=sometimes\n")
    expected = 'conf/app.yml: main.debug: expected bool, got "sometimes" (KJ_DEBUG from conf/app.env)'
    assert error_of(["conf/app.yml"], env_files=["conf/app.env"]) == expected
