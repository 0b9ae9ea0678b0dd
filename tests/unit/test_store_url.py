"""``open_store``: the one place a store is built from ``MCPEXEC_DATABASE_URL``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpexec.errors import InvalidStoreUrl
from mcpexec.settings import Settings
from mcpexec.store.memory import MemoryStore
from mcpexec.store.sqlite import SqliteStore
from mcpexec.store.url import open_store, sqlite_url


def test_the_default_url_is_the_sqlite_file_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.store_url == sqlite_url(tmp_path / "mcpexec.db")
    store = open_store(settings.store_url)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "mcpexec.db"


def test_the_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPEXEC_DATABASE_URL", f"sqlite:///{tmp_path}/other.db")
    store = open_store(Settings(home=tmp_path).store_url)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "other.db"


def test_relative_sqlite_path_and_memory() -> None:
    store = open_store("sqlite:///data/x.db")
    assert isinstance(store, SqliteStore)
    assert store.path == Path("data/x.db")
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://db/mcpexec", "unknown scheme 'mysql'"),
        ("postgresql://db", "name the database"),
        ("postgresql://db/x?nosuchparam=1", "not a PostgreSQL URL"),
        ("/var/lib/mcpexec.db", "not a URL"),
        ("sqlite://host/x.db", "sqlite:///PATH"),
        ("sqlite:///", "sqlite:///PATH"),
        ("sqlite:///x.db?mode=ro", "sqlite:///PATH"),
        ("memory://somewhere", "memory://"),
    ],
)
def test_a_bad_url_is_a_clear_error_naming_the_field(url: str, says: str) -> None:
    with pytest.raises(InvalidStoreUrl, match="database_url") as caught:
        open_store(url)
    assert says in caught.value.message
    assert caught.value.code == "invalid_store_url"
    assert caught.value.details["field"] == "database_url"


def test_a_postgresql_url_opens_the_postgres_store() -> None:
    from mcpexec.store.postgres import PostgresStore

    for url in ("postgresql://mcpexec@db.internal/mcpexec", "postgres://u:pw@db:5433/x"):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        assert type(store).wakes_across_processes


def test_the_url_is_not_shown_in_the_settings_repr(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="sqlite:///secret-place.db")
    assert "secret-place" not in repr(settings)
