"""Settings are documented once, by their docstrings; the docs' tables are made from them."""

from __future__ import annotations

import pytest

from kaiju.health import AppHealth
from kaiju.runtime.registry import BUILTIN, Registry
from kaiju.runtime.service import Service
from kaiju.runtime.settings_docs import setting_docs, settings_table, undocumented_settings
from kaiju.runtime.types import Positive

SHIPPED = [Registry(use_entry_points=False).resolve(name) for name in sorted(BUILTIN)] + [AppHealth]


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.__name__)
def test_every_setting_kaiju_ships_has_a_docstring(cls: type) -> None:
    assert undocumented_settings(cls) == [], f"{cls.__name__}: settings without a docstring"


class Poller(Service):
    interval: Positive = 1.0
    """Seconds between two polls."""
    target: str | None = None
    limit: int = 3
    """Polls at most,
    then it stops."""


class FasterPoller(Poller):
    interval: Positive = 0.5
    """Seconds between two polls, half as many."""


def test_a_setting_without_a_docstring_is_found() -> None:
    assert undocumented_settings(Poller) == ["target"]


def test_docstrings_are_read_from_the_class_and_its_bases() -> None:
    docs = setting_docs(FasterPoller)
    assert docs["interval"] == "Seconds between two polls, half as many."
    assert docs["limit"] == "Polls at most,\nthen it stops."


def test_the_table_shows_type_default_and_meaning() -> None:
    table = settings_table(Poller)
    assert "   * - ``interval``\n     - float > 0\n     - ``1.0``\n     - Seconds between two polls." in table
    assert "   * - ``target``\n     - str or null\n     - ``null``\n     - " in table
    assert "   * - ``limit``\n     - int\n     - ``3``\n     - Polls at most, then it stops." in table
    own = settings_table(FasterPoller, own=True)
    assert "``interval``" in own and "``limit``" not in own
