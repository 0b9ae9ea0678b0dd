"""The test environment's own rules (see ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import MutableMapping

#: Every variable ``Settings`` reads starts with this prefix (``MCPEXEC_CONFIG`` included)...
SETTINGS_PREFIX = "MCPEXEC_"
#: ...but for seed 001's names of the gateway's settings (issue 14).
SEED_NAMES = frozenset({"MCP_CONFIG_PATH", "SANDBOX_DIRECTORY", "MAX_CONCURRENT_EXECUTIONS"})


def settings_variables(environ: MutableMapping[str, str]) -> list[str]:
    """The names in ``environ`` that ``Settings`` would read, sorted."""
    return sorted(
        name
        for name in environ
        if name.upper().startswith(SETTINGS_PREFIX) or name.upper() in SEED_NAMES
    )


def scrub_settings_environment(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every ``MCPEXEC_*`` variable (and the seed's names) from ``environ``; returns
    the names removed."""
    names = settings_variables(environ)
    for name in names:
        del environ[name]
    return names
