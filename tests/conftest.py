"""Rules every test shares.

``Settings`` is a ``BaseSettings``: it reads ``MCPEXEC_*`` variables and the ``MCPEXEC_CONFIG``
file. A developer's own environment (``MCPEXEC_SANDBOX=none``, a ``MCPEXEC_HOME`` with a
config.toml) would otherwise change what a test builds, so every such variable is removed once,
when pytest configures itself: before any test module (or its module-level ``Settings``) is
imported. Tests that set variables on purpose (``monkeypatch.setenv``, a child's ``env=``) still
can. Subprocesses started with ``os.environ`` inherit the scrubbed environment.
"""

from __future__ import annotations

import os

import pytest

from environment import scrub_settings_environment, settings_variables

_REMOVED = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    # A hook, not only an autouse fixture: fixtures run after collection, and collection imports
    # test modules that build Settings at module level (tests/sandbox/conftest.py).
    config.stash[_REMOVED] = scrub_settings_environment(os.environ)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from pg_server import drop_session_database

    drop_session_database()  # the throwaway PostgreSQL database, if a test made one


def pytest_report_header(config: pytest.Config) -> str | None:
    removed = config.stash.get(_REMOVED, [])
    return f"scrubbed from the environment: {', '.join(removed)}" if removed else None


@pytest.fixture(autouse=True, scope="session")
def _clean_settings_environment() -> None:
    """Session-wide, before the first test: scrub again whatever collection re-introduced."""
    scrub_settings_environment(os.environ)
    assert settings_variables(os.environ) == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
