import logging
from typing import Optional

from kaiju.runtime.service import App, Namespace, Service
from tests.runtime.sample_services import Api, Cache, Database


def test_settings_become_attributes_with_class_defaults():
    api = Api(port=9000)
    assert api.port == 9000 and api.hosts == [] and api.delay == 0.0
    assert api.name == "api"
    assert Api(name="public").name == "public"


def test_default_name_is_class_name_without_service_name():
    class Plain(Service):
        async def start(self):
            pass

    assert Plain().name == "Plain"


def test_dependencies_from_annotations():
    deps = {d.attr: (d.cls, d.optional) for d in Api.dependencies()}
    assert deps == {"db": (Database, False), "cache": (Cache, False), "extra": (Cache, True)}


def test_settings_fields_leave_out_dependencies_and_runtime_names():
    fields = Api.settings_fields()
    assert {"port", "hosts", "events", "delay", "fail", "stop_delay"} <= set(fields)
    assert not {"db", "cache", "extra", "name", "app", "logger"} & set(fields)
    assert fields["port"] == (int, 8080)


def test_settings_fields_include_init_keywords():
    class Configured(Service):
        def __init__(self, *, host: str = "localhost", retries: int = 3, **kwargs):
            self.host, self.retries = host, retries
            super().__init__(**kwargs)

        async def start(self):
            pass

    assert Configured.settings_fields() == {"host": (str, "localhost"), "retries": (int, 3)}


def test_optional_union_syntax_is_a_dependency():
    class Uses(Service):
        db: Database | None = None
        other: "Optional[Cache]" = None

        async def start(self):
            pass

    assert {(d.attr, d.cls, d.optional) for d in Uses.dependencies()} == {("db", Database, True), ("other", Cache, True)}


def test_namespace_keys():
    ns = Namespace("dev", "shop")
    assert ns.get_key("_cache", "user", 1) == "dev.shop._cache.user.1"
    assert ns.child("_lock").get_key("k") == "dev.shop._lock.k"
    assert str(App("shop", "prod").namespace) == "prod.shop"
    assert App("shop", "prod").shared_namespace.get_key("x") == "prod._shared.x"


def test_logger_is_child_of_app_logger_and_takes_extras(caplog):
    app = App("shop")
    db = Database(loglevel="DEBUG")
    db.bind(app)
    assert db.logger.name == "shop.db"
    assert db.logger.logger.level == logging.DEBUG
    with caplog.at_level(logging.DEBUG, logger="shop"):
        db.logger.info("saved", user_id=7)
    record = next(r for r in caplog.records if r.getMessage() == "saved")
    assert record.user_id == 7
