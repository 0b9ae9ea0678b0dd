"""A throwaway PostgreSQL database for one test session, and a fresh schema per test.

The server is the one on loopback (``postgresql://postgres@127.0.0.1:5432``, trust auth) unless
``TEST_POSTGRES_URL`` names another (its database is only used to create and drop ours). The
first test that needs it creates ``mcpexec_test_<random>``; ``tests/conftest.py`` drops it when
the session ends. No other database is ever touched. Without a server the test skips, under
``CI=true`` it fails (``servers.missing``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator

import psycopg

from servers import missing

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_state: dict[str, str] = {}
_schemas = itertools.count(1)


def admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", "").strip() or DEFAULT_ADMIN_URL


def _with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    user = info.get("user", "postgres")
    return f"postgresql://{user}@{host}:{port}/{name}"


def session_database() -> str:
    """The URL of this session's database (created on first use)."""
    if "error" in _state:
        missing("PostgreSQL", _state["error"])
    if "url" not in _state:
        name = f"mcpexec_test_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(admin_url(), autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as exc:
            _state["error"] = f"cannot create a database on {admin_url()}: {exc}".strip()
            missing("PostgreSQL", _state["error"])
        _state["name"] = name
        _state["url"] = _with_database(admin_url(), name)
    return _state["url"]


def drop_session_database() -> None:
    """Drop this session's database, if one was made (closing whatever still uses it)."""
    name = _state.pop("name", None)
    _state.pop("url", None)
    if name is None:
        return
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_url(schema: str) -> str:
    """The session database's URL with ``schema`` as the search path."""
    return f"{session_database()}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL on a new, empty schema of the session database, dropped afterwards."""
    url = session_database()
    schema = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
