import subprocess
import sys

import pytest

from kaiju.runtime.registry import BUILTIN, ClassNotFound, Registry
from kaiju.runtime.service import Service
from tests.runtime.sample_services import Api


def test_builtin_names_are_imported_only_when_named():
    code = (
        "import sys; from kaiju.runtime.registry import Registry; registry = Registry(); "
        "assert 'kaiju.tasks.periodic' not in sys.modules; cls = registry.resolve('PeriodicTask'); "
        "assert cls.__name__ == 'PeriodicTask' and 'kaiju.tasks.periodic' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # a fresh interpreter: nothing imported yet


def test_the_demo_service_is_named_by_its_module_path():
    assert "DemoService" not in BUILTIN
    assert Registry().resolve("kaiju.demo:DemoService").__name__ == "DemoService"


def test_every_builtin_reference_is_well_formed():
    for name, ref in BUILTIN.items():
        module, _, attr = ref.partition(":")
        assert module.startswith("kaiju.") and attr == name


def test_packages_make_their_classes_addressable():
    registry = Registry(["tests.runtime.sample_services"])
    assert registry.resolve("Api") is Api
    assert "Recorder" in registry.names()


def test_module_colon_class_always_works():
    assert Registry().resolve("tests.runtime.sample_services:Api") is Api


def test_unknown_class_suggests_close_names():
    with pytest.raises(ClassNotFound, match=r'unknown service class "MemoryCahce" \(did you mean MemoryCache'):
        Registry().resolve("MemoryCahce")


def test_unknown_module_and_attribute():
    with pytest.raises(ClassNotFound, match='cannot import module "no.such"'):
        Registry().resolve("no.such:Thing")
    with pytest.raises(ClassNotFound, match='has no attribute "Nope"'):
        Registry().resolve("tests.runtime.sample_services:Nope")


def test_not_a_service():
    with pytest.raises(ClassNotFound, match="not an aiomisc.Service subclass"):
        Registry().resolve("collections:OrderedDict")


def test_add_registers_one_class():
    class Local(Service):
        async def start(self):
            pass

    registry = Registry()
    registry.add(Local, "Alias")
    assert registry.resolve("Alias") is Local


def test_entry_point_group_makes_classes_addressable(tmp_path, monkeypatch):
    dist = tmp_path / "kaiju_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kaiju-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kaiju.services]\nPluginApi = tests.runtime.sample_services:Api\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Registry().resolve("PluginApi") is Api
    with pytest.raises(ClassNotFound):
        Registry(use_entry_points=False).resolve("PluginApi")


def test_packages_find_classes_their_init_re_exports(tmp_path, monkeypatch):
    pkg = tmp_path / "shopapp"
    pkg.mkdir()
    (pkg / "services.py").write_text(
        "import kaiju\nfrom aiomisc.service import TCPServer\n"
        "class Orders(kaiju.Service):\n    pass\n"
        "class Echo(TCPServer):\n    async def handle_client(self, reader, writer):\n        pass\n"
    )
    (pkg / "__init__.py").write_text("from shopapp.services import Echo, Orders\nfrom kaiju.demo import DemoService\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(["shopapp"], use_entry_points=False)
    assert registry.resolve("Orders").__module__ == "shopapp.services"
    assert registry.resolve("Echo").__name__ == "Echo"
    # a class the package imports from elsewhere is not its own: the built-in name still rules
    assert "DemoService" not in registry._classes


@pytest.mark.parametrize(("name", "hint"), [
    ("LoggingService", "logging: section"), ("SessionService", "CacheSessions"), ("HTTPService", "HTTPClient"),
    ("RPCClientService", "HTTPRPCClient"), ("Scheduler", "PeriodicTask or CronTask"),
])
def test_kaiju_tools_class_names_say_what_took_their_place(name, hint):
    with pytest.raises(ClassNotFound, match=f"kaiju-tools' class: .*{hint}"):
        Registry().resolve(name)


def test_a_listed_package_is_read_with_its_services_module_and_its_own_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "orders"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "warehouse.py").write_text("import kaiju\nclass Warehouse(kaiju.Service):\n    pass\n")
    (pkg / "services.py").write_text("import kaiju\nfrom orders.warehouse import Warehouse\nclass Orders(kaiju.Service):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # kaiju-tools' packages: [orders] read orders.services; the classes it imports from its own package count
    registry = Registry(["orders"], use_entry_points=False)
    assert registry.resolve("Orders").__module__ == "orders.services"
    assert registry.resolve("Warehouse").__module__ == "orders.warehouse"
    assert Registry(["orders.services"], use_entry_points=False).resolve("Warehouse").__name__ == "Warehouse"
