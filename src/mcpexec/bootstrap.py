"""Assembly: settings → store, executor, blobs → an ``App``.

The one place that picks the concrete plug-ins. Every process entry point builds its App here:
``serve`` (``mcpexec.asgi``), ``worker`` (``mcpexec.serving``) and the stdio MCP server, none of
which needs the others' machinery (ASGI, uvicorn, the MCP SDK).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

from mcpexec.app import App
from mcpexec.errors import ConfigError
from mcpexec.executor.sandbox import build_executor
from mcpexec.settings import Settings
from mcpexec.store.base import Store
from mcpexec.store.blobs import BlobStore, FileBlobStore
from mcpexec.store.url import open_store

if TYPE_CHECKING:
    from mcpexec.store.postgres import PostgresStore


def build_app(settings: Settings, *, pidfd_watcher: bool = False) -> App:
    """An App on the store ``settings.store_url`` names (the SQLite file under ``settings.home``
    by default) and the executor ``settings.sandbox`` selects (bwrap sandbox by default; see
    :mod:`mcpexec.executor.sandbox`). Secrets are loaded by the executor it builds."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings.store_url)
    # pidfd_watcher: only for processes that run one event loop for life (serve, worker, mcp);
    # see mcpexec.executor.subprocess.use_pidfd_child_watcher.
    executor = build_executor(settings, pidfd_watcher=pidfd_watcher)
    return App(settings, store, executor, build_blobs(settings, store))


def build_blobs(settings: Settings, store: Store) -> BlobStore:
    """Where artifact bytes go (the setting ``blob_store``): in the PostgreSQL database the
    store is on (``postgres``; ``auto`` picks it for a PostgreSQL store) or files under
    ``home/artifacts`` (``directory``)."""
    choice = settings.blob_store
    postgres = _as_postgres(store)
    if choice == "directory" or (choice == "auto" and postgres is None):
        return FileBlobStore(settings.artifacts_dir)
    if postgres is None:
        raise ConfigError(
            "blob_store (MCPEXEC_BLOB_STORE) is postgres but database_url is not a PostgreSQL "
            "URL: set MCPEXEC_DATABASE_URL=postgresql://USER@HOST/DBNAME or "
            "MCPEXEC_BLOB_STORE=directory"
        )
    return postgres.blob_store()


def _as_postgres(store: Store) -> PostgresStore | None:
    """``store`` if it is a PostgresStore. Without importing that module for the other dialects:
    psycopg costs 0.2 s of every start (``mcpexec mcp`` answers ``initialize`` after it), and a
    PostgresStore exists only once its module is loaded."""
    module = sys.modules.get("mcpexec.store.postgres")
    if module is not None and isinstance(store, module.PostgresStore):
        return cast("PostgresStore", store)
    return None
