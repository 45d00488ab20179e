"""Loading a project config: sources -> merge -> fill templates -> validate.

Sources, lowest to highest precedence: YAML files (or dicts) merged in order, then the
values templates are filled from: env files, OS environment variables (only the keys
templates use), and an explicit mapping (``-e KEY=VALUE``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from kaiju.config.errors import ConfigError, Path, PathError, describe_value, format_path
from kaiju.config.merge import Origins, merge_layers, service_identity
from kaiju.config.settings import ProjectSettings, convert_settings
from kaiju.config.sources import read_env_file, read_yaml_file
from kaiju.config.templates import fill_templates, template_keys, texts_under

__all__ = ["LoadedConfig", "load_config", "load_config_data"]

PYTHON_SOURCE = "<python>"


@dataclass(frozen=True, eq=False)
class LoadedConfig:
    """A loaded, validated config and where each part of it came from.

    `settings` is the typed config, `data` the effective config (after templates) as plain
    data, `files` the config sources in merge order, `env_files` the env files read.
    """

    settings: ProjectSettings
    data: dict[str, Any]
    files: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    origins: Origins = field(default_factory=dict, repr=False)
    template_texts: dict[Path, str] = field(default_factory=dict, repr=False)
    # the merged config before templates were filled, and where each template value came
    # from ("-e", an env file's path, "the environment"): errors say where a bad value came from
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    value_sources: dict[str, str] = field(default_factory=dict, repr=False)

    def source(self, path: Sequence[Any]) -> str:
        """The source (file) that set the value at `path`, or its nearest recorded ancestor.

        A ``services`` element may be addressed by index or by its name (or class).
        For a value filled by a template this is the file where the template stands.
        """
        return _source_of(self._indexed(path), self.origins, self.files)

    def format_path(self, path: Sequence[Any]) -> str:
        """`path` as a person reads it, e.g. ``services[http].settings.port``."""
        return format_path(self._indexed(path), self.data)

    def error(self, path: Sequence[Any], message: str) -> ConfigError:
        """Build (not raise) a `ConfigError` for `path`, naming the file that set it.

        ``config.error(("services", 0, "settings", "port"), 'expected int, got "abc"')``
        prints as ``conf/app.yml: services[http].settings.port: expected int, got "abc"``;
        a value a template took from ``-e``, an env file or the environment says so
        (``... got "abc" (PORT from -e)``).
        """
        indexed = self._indexed(path)
        note = _value_note(_lookup_raw(self.raw, indexed), self.value_sources)
        return ConfigError(message + note, source=self.source(path), path=self.format_path(path))

    def texts_under(self, path: Sequence[Any]) -> dict[Path, str]:
        """Template texts below `path` (relative to it), for `convert_with_texts`.

        E.g. ``convert_with_texts(entry_settings, SettingsStruct, config.texts_under(("services", 0, "settings")))``
        lets ``password: "[PW]"`` with ``PW=123456`` reach a ``str`` setting as ``"123456"``.
        """
        return texts_under(self.template_texts, self._indexed(path))

    def _indexed(self, path: Sequence[Any]) -> Path:
        path = tuple(path)
        if len(path) > 1 and path[0] == "services" and isinstance(path[1], str):
            for index, entry in enumerate(self.data.get("services") or ()):
                if service_identity(entry) == path[1]:
                    return ("services", index) + path[2:]
        return path


def load_config(
    files: Sequence[str | FilePath | Mapping[str, Any]],
    env_files: Sequence[str | FilePath] = (),
    env: Mapping[str, Any] | None = None,
    os_env: bool = True,
    *,
    strict_env: bool = False,
) -> LoadedConfig:
    """Load, merge, fill and validate a config from YAML files (or dicts, in order).

    `env_files` (JSON objects or ``KEY=VALUE`` files), the OS environment (unless
    `os_env` is false) and `env` give template values, each overriding the one before.
    With `strict_env` (the command line's ``-e``), a key of `env` that no template uses is
    an error: a typo (``PROT=9000``) would otherwise leave the default in place unseen.

    Raises `ConfigError` (naming the file and key path) for anything wrong: a missing or
    unreadable file, bad YAML, a bad env file line, a template without a value, a wrong
    type, a missing or unknown key, a service named twice in one file, no file at all.
    """
    if isinstance(files, (str, FilePath, Mapping)):
        files = [files]  # one source given bare: a common slip, and unambiguous
    if not files:
        raise ConfigError("no config given: name at least one config file (-c FILE)")
    layers = [_read_layer(item) for item in files]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in env_files:
        read = read_env_file(path)
        values.update(read)
        sources.update(dict.fromkeys(read, str(path)))
    return _build(layers, values, env, os_env, tuple(str(p) for p in env_files), strict_env, sources)


def load_config_data(
    data: Mapping[str, Any],
    source: str = PYTHON_SOURCE,
    env: Mapping[str, Any] | None = None,
    os_env: bool = True,
) -> LoadedConfig:
    """Like `load_config`, from an already-parsed mapping; errors name `source`."""
    return _build([(source, _check_mapping(data, source))], {}, env, os_env, ())


def _read_layer(item: str | FilePath | Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, Mapping):
        return PYTHON_SOURCE, item
    if isinstance(item, (str, FilePath)):
        return str(item), read_yaml_file(item)
    raise ConfigError(f"expected a file path or a mapping, got {describe_value(item)}", source=PYTHON_SOURCE)


def _check_mapping(data: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {describe_value(data)}", source=source)
    return data


def _build(
    layers: list[tuple[str, Mapping[str, Any]]],
    values: dict[str, Any],
    env: Mapping[str, Any] | None,
    os_env: bool,
    env_files: tuple[str, ...],
    strict_env: bool = False,
    sources: dict[str, str] | None = None,
) -> LoadedConfig:
    files = tuple(source for source, _ in layers)
    try:
        merged, origins = merge_layers(layers)
    except PathError as exc:
        raw = next((data for source, data in layers if source == exc.source), {})
        raise ConfigError(exc.message, source=exc.source or "", path=format_path(exc.path, raw)) from None
    used = template_keys(merged)
    sources = dict(sources or {})
    _check_kaiju_tools_keys(values, sources, used)
    if strict_env and env:
        _check_used(env, used)
    if os_env:
        found = {key: os.environ[key] for key in sorted(used) if key in os.environ}
        values.update(found)
        sources.update(dict.fromkeys(found, "the environment"))
    if env:
        values.update(env)
        sources.update(dict.fromkeys(env, "-e" if strict_env else "the env values given"))
    texts: dict[Path, str] = {}
    try:
        filled = fill_templates(merged, values, texts)
    except PathError as exc:
        raise _located(exc, merged, origins, files) from None
    try:
        settings = convert_settings(filled, texts)
    except PathError as exc:
        raise _located(exc, filled, origins, files, merged, sources) from None
    # settings, data, files, env_files, origins, template_texts; then where the values came from
    return LoadedConfig(settings, filled, files, env_files, origins, texts, raw=merged, value_sources=sources)


def _check_used(env: Mapping[str, Any], used: set[str]) -> None:
    """Raise a ConfigError for the first key of `env` no template uses, with the nearest ones."""
    for key in env:
        if key not in used:
            import difflib  # only a key no template uses needs suggestions

            near = difflib.get_close_matches(key, sorted(used), n=3)
            hint = (
                f"; did you mean {' or '.join(near)}?"
                if near
                else f"; the config's templates use: {', '.join(sorted(used)) or 'none'}"
            )
            raise ConfigError(f"expected a key a template of the config uses, got {key}{hint}", source="-e")


def _located(
    exc: PathError,
    data: dict[str, Any],
    origins: Origins,
    files: tuple[str, ...],
    raw: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
) -> ConfigError:
    note = _value_note(_lookup_raw(raw or {}, exc.path), sources or {})
    return ConfigError(
        exc.message + note, source=_source_of(exc.path, origins, files), path=format_path(exc.path, data)
    )


def _lookup_raw(raw: Any, path: Path) -> Any:
    node = raw
    for key in path:
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if (isinstance(node, dict) and key in node) or in_list:
            node = node[key]
        else:
            return None
    return node


def _value_note(raw: Any, sources: Mapping[str, str]) -> str:
    """` (PORT from -e)` for a value a template filled from a source outside the config files."""
    if not isinstance(raw, str) or "[" not in raw:
        return ""
    came = [f"{key} from {sources[key]}" for key in sorted(template_keys(raw)) if key in sources]
    return f" ({', '.join(came)})" if came else ""


# kaiju-tools' standard env keys and the config values they filled there ("[main_env:'dev']")
KAIJU_TOOLS_ENV_KEYS = {
    "main_name": ("main.name", 'main: {name: "[main_name]"}'),
    "main_env": ("main.env", 'main: {env: "[main_env:dev]"}'),
    "main_loglevel": ("main.loglevel", 'main: {loglevel: "[main_loglevel:INFO]"}'),
    "run_host": ("the HTTPServer setting host", 'an HTTPServer\'s settings: {host: "[run_host:127.0.0.1]"}'),
    "run_port": ("the HTTPServer setting port", 'an HTTPServer\'s settings: {port: "[run_port:8080]"}'),
}


def _check_kaiju_tools_keys(values: Mapping[str, Any], sources: Mapping[str, str], used: set[str]) -> None:
    """Refuse a kaiju-tools env key (`main_env: prod`) that no template uses: its value would
    be dropped without a word, and the app would run with the default env (and its keys)."""
    for key, (where, example) in KAIJU_TOOLS_ENV_KEYS.items():
        if key in values and key not in used:
            raise ConfigError(
                f"{key} is kaiju-tools' value for {where}, and no template of the config uses it "
                f"(so it would be dropped): write {example} in the config, or drop it from the env file",
                source=sources.get(key, "env"),
            )


def _source_of(path: Path, origins: Origins, files: tuple[str, ...]) -> str:
    for end in range(len(path), -1, -1):
        found = origins.get(path[:end])
        if found is not None:
            return found
    return files[0] if files else ""
