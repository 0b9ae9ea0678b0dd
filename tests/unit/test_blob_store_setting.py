"""The setting ``blob_store`` picks where artifact bytes go (``mcpexec.bootstrap.build_blobs``)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from mcpexec.bootstrap import build_blobs
from mcpexec.errors import ConfigError
from mcpexec.settings import Settings
from mcpexec.store._pg_blobs import PostgresBlobStore
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.store.postgres import PostgresStore
from mcpexec.store.sqlite import SqliteStore

PG = "postgresql://postgres@127.0.0.1:5432/nowhere"  # never connected to: nothing is opened


def test_auto_follows_the_database(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.blob_store == "auto"
    on_disk = build_blobs(settings, SqliteStore(tmp_path / "x.db"))
    assert isinstance(on_disk, FileBlobStore)
    assert on_disk.root == settings.artifacts_dir
    assert isinstance(build_blobs(settings, MemoryStore()), FileBlobStore)
    assert isinstance(build_blobs(settings, PostgresStore(PG)), PostgresBlobStore)


def test_directory_and_postgres_are_explicit(tmp_path: Path) -> None:
    directory = Settings(home=tmp_path, blob_store="directory")
    assert isinstance(build_blobs(directory, PostgresStore(PG)), FileBlobStore)
    postgres = Settings(home=tmp_path, blob_store="postgres")
    assert isinstance(build_blobs(postgres, PostgresStore(PG)), PostgresBlobStore)


def test_postgres_without_a_postgresql_database_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, blob_store="postgres")
    with pytest.raises(ConfigError, match=r"blob_store \(MCPEXEC_BLOB_STORE\) is postgres"):
        build_blobs(settings, SqliteStore(tmp_path / "x.db"))


def test_an_unknown_value_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="blob_store"):
        Settings(home=tmp_path, blob_store="s3")  # type: ignore[arg-type]
