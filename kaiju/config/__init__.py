"""Project config: YAML files and env values -> templates filled -> typed `ProjectSettings`.

Use `load_config` (files) or `load_config_data` (a dict); both return a `LoadedConfig`
and raise `ConfigError` naming the file and key path on any problem.
"""

from kaiju.config.display import dump_yaml, is_secret_key, mask_secrets
from kaiju.config.errors import ConfigError, describe_value, format_path
from kaiju.config.loader import LoadedConfig, load_config, load_config_data
from kaiju.config.settings import (
    LOG_LEVELS,
    MainSettings,
    ProjectSettings,
    ServiceSettings,
    convert_with_texts,
    validation_problem,
)
from kaiju.config.sources import parse_env_assignment, parse_env_text, read_env_file
from kaiju.config.templates import fill_templates, read_scalar, template_keys

__all__ = [
    "LOG_LEVELS",
    "ConfigError",
    "LoadedConfig",
    "MainSettings",
    "ProjectSettings",
    "ServiceSettings",
    "convert_with_texts",
    "describe_value",
    "dump_yaml",
    "fill_templates",
    "format_path",
    "is_secret_key",
    "load_config",
    "load_config_data",
    "mask_secrets",
    "parse_env_assignment",
    "parse_env_text",
    "read_env_file",
    "read_scalar",
    "template_keys",
    "validation_problem",
]
