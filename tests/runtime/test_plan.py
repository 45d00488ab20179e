"""Config -> instances -> dependencies -> layers, and every error that can be found before start."""

import pytest

from kaiju.config import ConfigError, load_config, load_config_data
from kaiju.runtime.plan import build_plan
from kaiju.runtime.service import SettingError
from tests.runtime.sample_services import Api, Cache, Database, Worker

PKG = "tests.runtime.sample_services"


def plan_of(*services, source="conf/app.yml", **extra):
    data = {"main": {"name": "demo"}, "packages": [PKG], "services": list(services), **extra}
    return build_plan(load_config_data(data, source=source, os_env=False))


def error_of(*services, **extra) -> str:
    with pytest.raises(ConfigError) as info:
        plan_of(*services, **extra)
    return str(info.value)


def test_layers_and_wiring_by_type():
    plan = plan_of({"cls": "Api"}, {"cls": "Cache"}, {"cls": "Database"}, {"cls": "Worker"})
    assert plan.layers == [["db"], ["cache"], ["api", "worker"]]
    api, cache, db = (plan.specs[n].service for n in ("api", "cache", "db"))
    assert api.db is db and api.cache is cache and cache.db is db
    assert api.extra is cache  # optional, and exactly one candidate
    assert plan.specs["api"].needs == {"db": "db", "cache": "cache", "extra": "cache"}
    assert set(plan.app.services) == {"api", "cache", "db", "worker"}
    assert all(s.app is plan.app for s in plan.app.services.values())


def test_optional_dependency_without_candidate_is_none():
    plan = plan_of({"cls": "Worker"})
    assert plan.specs["worker"].service.cache is None


def test_dependency_by_name_picks_among_several():
    plan = plan_of(
        {"cls": "Database", "name": "db1"},
        {"cls": "Database", "name": "db2"},
        {"cls": "Cache", "settings": {"db": "db2"}},
    )
    assert plan.specs["cache"].service.db is plan.specs["db2"].service


def test_settings_are_converted_and_set():
    plan = plan_of({"cls": "Database"}, {"cls": "Cache"}, {"cls": "Api", "settings": {"port": 9000, "hosts": ["a"]}})
    api = plan.specs["api"].service
    assert isinstance(api, Api) and api.port == 9000 and api.hosts == ["a"]


def test_disabled_entries_are_not_built():
    plan = plan_of({"cls": "Database"}, {"cls": "Worker", "enabled": False})
    assert list(plan.specs) == ["db"]


def test_wrong_setting_type_names_file_and_path():
    msg = error_of({"cls": "Database"}, {"cls": "Cache"}, {"cls": "Api", "name": "http", "settings": {"port": "abc"}})
    assert msg == 'conf/app.yml: services[http].settings.port: expected int, got "abc"'


def test_unknown_setting():
    msg = error_of({"cls": "Database", "settings": {"prot": 1}})
    assert msg == "conf/app.yml: services[Database].settings.prot: unknown key"


def test_required_setting_missing():
    msg = error_of({"cls": "Database"}, {"cls": "Cache"}, {"cls": "Api"}, {"cls": "Needy"})
    assert msg == "conf/app.yml: services[Needy].settings.level: required key missing"


def test_unknown_class():
    msg = error_of({"cls": "Databse"})
    assert msg.startswith('conf/app.yml: services[Databse].cls: unknown service class "Databse" (did you mean Database')


def test_duplicate_service_name():
    msg = error_of({"cls": "Database"}, {"cls": "Worker", "name": "db"})
    assert msg.startswith('conf/app.yml: services[db].name: duplicate service name "db"')


def test_missing_dependency():
    msg = error_of({"cls": "Cache"})
    assert msg == "conf/app.yml: services[Cache].settings.db: cache needs a Database service (db), and there is none: add a Database"


def test_ambiguous_dependency_asks_to_name_one():
    msg = error_of({"cls": "Database", "name": "a"}, {"cls": "Database", "name": "b"}, {"cls": "Cache"})
    assert "cache needs one Database (db) and there are several: a, b; name one in settings: {db: NAME}" in msg
    assert msg.startswith("conf/app.yml: services[Cache].settings.db:")


def test_dependency_named_but_absent_or_wrong_type():
    assert 'cache needs "nope", but no service has that name' in error_of({"cls": "Cache", "settings": {"db": "nope"}})
    msg = error_of({"cls": "Worker"}, {"cls": "Cache", "settings": {"db": "worker"}})
    assert '"worker" is a Worker, not a Database' in msg


def test_dependency_setting_must_be_a_name():
    msg = error_of({"cls": "Database"}, {"cls": "Cache", "settings": {"db": 5}})
    assert msg == "conf/app.yml: services[Cache].settings.db: expected the name of a Database service"


def test_cycle_is_a_config_error():
    msg = error_of(
        {"cls": "Database", "name": "d"},
        {"cls": "Cache", "name": "c1", "settings": {"db": "d"}},
        {"cls": "Api", "name": "a1", "settings": {"db": "d", "cache": "c1"}},
        {"cls": "tests.runtime.test_plan:Loop1"},
        {"cls": "tests.runtime.test_plan:Loop2"},
    )
    assert "dependency cycle: loop1 -> loop2 -> loop1" in msg


def test_error_names_the_file_that_set_the_value(tmp_path):
    base = tmp_path / "base.yml"
    base.write_text(f"main: {{name: demo}}\npackages: [{PKG}]\nservices:\n  - cls: Database\n    name: db\n")
    over = tmp_path / "prod.yml"
    over.write_text("services:\n  - name: db\n    settings: {delay: fast}\n")
    with pytest.raises(ConfigError) as info:
        build_plan(load_config([base, over], os_env=False))
    assert str(info.value) == f'{over}: services[db].settings.delay: expected float, got "fast"'


def test_instances_passed_in_join_the_config():
    db = Database(name="db")
    plan = build_plan(load_config_data({"main": {"name": "x"}, "packages": [PKG], "services": ["Cache"]}), [db])
    assert plan.specs["cache"].service.db is db and db.app is plan.app
    assert plan.layers == [["db"], ["cache"]]


class CachingWorker(Worker):
    """A worker whose `cached` setting cannot work without its optional cache."""

    cached: bool = False

    def check(self) -> None:
        if self.cached and self.cache is None:
            raise SettingError("cached", "expected a Cache service in the app for cached: true")


def test_check_hook_runs_once_wired_and_before_start():
    data = {"main": {"name": "x"}, "packages": [PKG], "services": ["Database", "Cache"]}
    plan = build_plan(load_config_data(data, os_env=False), [CachingWorker(cached=True)])
    assert plan.specs["worker"].service.cache is plan.specs["cache"].service
    with pytest.raises(ConfigError) as info:
        build_plan(None, [CachingWorker(cached=True)])
    assert str(info.value) == "<python>: services[worker].settings.cached: expected a Cache service in the app for cached: true"
    build_plan(None, [CachingWorker(cached=False)])


def test_plan_without_config():
    plan = build_plan(None, [Database(), Cache()])
    assert plan.app.name == "app" and plan.layers == [["db"], ["cache"]]


def test_describe_lists_layers():
    text = plan_of({"cls": "Database"}, {"cls": "Worker", "required": False}, {"cls": "Cache"}).describe()
    assert "layer 1:\n  db [tests.runtime.sample_services:Database]" in text
    assert "worker [tests.runtime.sample_services:Worker] (optional) <- cache" in text


# two services needing each other, for the cycle test
class Loop1(Worker):
    service_name = "loop1"
    other: "Loop2"


class Loop2(Worker):
    service_name = "loop2"
    other: Loop1


def test_numeric_template_reaches_a_string_setting_as_text():
    data = {"main": {"name": "t"}, "services": [{"cls": "tests.runtime.test_plan:SecretHolder", "settings": {"password": "[PW]"}}]}
    plan = build_plan(load_config_data(data, env={"PW": "123456"}, os_env=False))
    assert plan.specs["SecretHolder"].service.password == "123456"


class SecretHolder(Database):
    service_name = None
    password: str = ""


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"cls": "HTTPServer", "settings": {"port": 99999}}, "services[HTTPServer].settings.port: expected int <= 65535, got 99999"),
        ({"cls": "MemoryCache", "settings": {"max_size": -1}}, "services[MemoryCache].settings.max_size: expected int >= 0, got -1"),
        ({"cls": "MemoryLocks", "settings": {"ttl": 0}}, "services[MemoryLocks].settings.ttl: expected float > 0.0, got 0"),
    ],
)
def test_constrained_settings_are_checked_before_start(entry, expected):
    data = {"main": {"name": "t"}, "services": [{"cls": "RPCServer"}, entry]}
    with pytest.raises(ConfigError) as info:
        build_plan(load_config_data(data, source="conf/app.yml", os_env=False))
    assert str(info.value) == f"conf/app.yml: {expected}"
