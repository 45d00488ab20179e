"""Project config: YAML files and env values -> templates filled -> typed `ProjectSettings`.

    from kaiju.config import ConfigError, load_config

Use `load_config` (files) or `load_config_data` (a dict); both return a `LoadedConfig`
and raise `ConfigError` naming the file and key path on any problem. The steps in
between (env sources, templates, merging, display) are internal: import them from their
modules. Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.config.errors import ConfigError
    from kaiju.config.loader import LoadedConfig, load_config, load_config_data
    from kaiju.config.settings import MainSettings, ProjectSettings, ServiceSettings

__getattr__ = _front_door(__name__, __file__, globals())
