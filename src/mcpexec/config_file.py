"""The configuration file: TOML or YAML, one settings schema, ``${ENV}`` references.

``config.toml`` and ``config.yaml`` (``.yml``) hold the same flat keys — the settings of
``settings.py``, e.g. ``port``, ``workers``, ``database_url``, ``[secrets]`` / ``secrets:``. A
string value may name environment variables: ``${NAME}`` is the variable's value (an error when
it is unset), ``${NAME:-default}`` falls back to ``default``, ``$$`` is a literal ``$``. So a
secret or a password stays in the environment (or a secrets manager filling it) while the file
says where it goes. A key that no setting has is an error naming the file and the key, with the
nearest known key, rather than a silently ignored typo.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from mcpexec.errors import ConfigError

YAML_SUFFIXES = (".yaml", ".yml")
_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in YAML_SUFFIXES


def parse(path: Path, text: str) -> dict[str, Any]:
    """The file's mapping as written (no substitution); ``ConfigError`` naming the file."""
    if is_yaml(path):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {path} is not valid YAML ({exc}); fix its syntax"
            ) from None
        data = {} if data is None else data
    else:
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {path} is not valid TOML ({exc}); fix its syntax"
            ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of settings")
    return data


def substitute(value: Any, path: Path, key: str, env: Mapping[str, str] | None = None) -> Any:
    """``value`` with every ``${NAME}`` / ``${NAME:-default}`` replaced (in strings, lists and
    mappings, recursively)."""
    env = os.environ if env is None else env
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name is None:  # "$$"
                return "$"
            found = env.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigError(
                f"config file {path}: key {key!r} names ${{{name}}}, which is not set; "
                f"set {name} or write ${{{name}:-default}}"
            )

        return _REFERENCE.sub(one, value)
    if isinstance(value, list):
        return [substitute(v, path, key, env) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, path, f"{key}.{k}", env) for k, v in value.items()}
    return value


def check_keys(data: Mapping[str, Any], known: Collection[str], path: Path) -> None:
    for key in data:
        if key not in known:
            import difflib  # only for the error (the CLI starts without it)

            near = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(
                f"config file {path}: unknown key {key!r}{hint} "
                "(every setting is in src/mcpexec/settings.py)"
            )


def load(path: Path, known: Collection[str]) -> dict[str, Any]:
    """The settings the file gives, checked against ``known`` and with references resolved."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    data = parse(path, text)
    check_keys(data, known, path)
    return {k: substitute(v, path, k) for k, v in data.items()}
