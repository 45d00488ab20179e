"""`kaiju.auth`'s front door: every exported name resolves, and importing it loads nothing else."""

from __future__ import annotations

from tests.test_imports import loaded_after
from tests.test_imports import test_every_exported_name_resolves_to_what_the_type_checker_sees as exports_ok


def test_every_exported_name_of_kaiju_auth_resolves() -> None:
    exports_ok("kaiju.auth")


def test_importing_kaiju_auth_loads_only_its_front_door() -> None:
    modules = loaded_after("import kaiju.auth")
    assert {m for m in modules if m.split(".")[0] == "kaiju"} == {"kaiju", "kaiju.auth"}
    assert not {"argon2", "jwt", "redis", "aiohttp"} & {m.split(".")[0] for m in modules}
