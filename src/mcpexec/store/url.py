"""The one place that opens a store from a URL (``MCPEXEC_DATABASE_URL``).

``sqlite:///absolute/path.db`` (three slashes, then the path: ``sqlite:////var/lib/x.db`` for
``/var/lib/x.db``; a relative path is relative to the working directory), ``postgresql://`` (or
``postgres://``) ``[user[:password]@]host[:port]/dbname[?param=value]`` with libpq's parameters
(many workers on many machines share one PostgreSQL) and ``memory://`` (the unit-test store:
nothing durable, nothing shared between processes). A second dialect adds one
entry to ``_OPENERS``; everything that builds a store (``mcpexec.bootstrap``) goes through
``open_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mcpexec.errors import InvalidStoreUrl
from mcpexec.store.base import Store


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at ``path``."""
    return f"sqlite:///{path}"


def _sqlite(url: str) -> Store:
    from mcpexec.store.sqlite import SqliteStore

    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment or not parts.path.strip("/"):
        raise InvalidStoreUrl(
            f"database_url {url!r}: write sqlite:///PATH (no host, query or fragment)",
            field="database_url",
        )
    # urlsplit keeps the slash after the empty host: "sqlite:///a.db" → "/a.db"; an absolute
    # path therefore arrives as "//var/...", and a relative one as "/a.db".
    path = parts.path[1:]
    return SqliteStore(Path(path))


def _memory(url: str) -> Store:
    from mcpexec.store.memory import MemoryStore

    if url.rstrip("/") != "memory:":
        raise InvalidStoreUrl(f"database_url {url!r}: write memory://", field="database_url")
    return MemoryStore()


def _postgres(url: str) -> Store:
    import psycopg.conninfo

    from mcpexec.store.postgres import PostgresStore

    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "not a libpq URL"
        raise InvalidStoreUrl(
            f"database_url (MCPEXEC_DATABASE_URL): not a PostgreSQL URL ({reason}); "
            "write postgresql://USER@HOST:PORT/DBNAME",
            field="database_url",
        ) from exc
    if not info.get("dbname"):
        raise InvalidStoreUrl(
            "database_url (MCPEXEC_DATABASE_URL): name the database: "
            "postgresql://USER@HOST:PORT/DBNAME",
            field="database_url",
        )
    return PostgresStore(url)


_OPENERS: dict[str, Callable[[str], Store]] = {
    "sqlite": _sqlite,
    "memory": _memory,
    "postgresql": _postgres,
    "postgres": _postgres,
}


_DIALECTS = {
    "sqlite": "sqlite",
    "memory": "memory",
    "postgresql": "postgres",
    "postgres": "postgres",
}


def store_dialect(url: str) -> str:
    """The migration dialect of a (valid) store URL: ``sqlite``, ``postgres`` or ``memory``."""
    return _DIALECTS[url.partition(":")[0].lower()]


def describe_store(url: str) -> str:
    """The store URL for messages: a PostgreSQL URL without user or password."""
    if store_dialect(url) != "postgres":
        return url
    from mcpexec.store._pg_db import describe

    return describe(url)


def open_store(url: str) -> Store:
    """A (not yet opened) store for ``url``; ``InvalidStoreUrl`` names what is wrong."""
    scheme, sep, _ = url.partition(":")
    if not sep or not scheme:
        raise InvalidStoreUrl(
            f"database_url {url!r} is not a URL (e.g. sqlite:////var/lib/mcpexec.db)",
            field="database_url",
        )
    opener = _OPENERS.get(scheme.lower())
    if opener is None:
        known = ", ".join(sorted(_OPENERS))
        raise InvalidStoreUrl(
            f"database_url {url!r}: unknown scheme {scheme!r} (known: {known})",
            field="database_url",
            scheme=scheme,
        )
    return opener(url)
