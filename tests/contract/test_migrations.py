"""Migrations: every dialect has the same numbers, and the migrated schema is what the code
reads and writes (the named queries compile, the columns match the models)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from mcpexec.errors import StoreError
from mcpexec.models import Attempt
from mcpexec.store import _migrations
from mcpexec.store._migrations import dialects, load_migrations, migrate, migration_numbers
from mcpexec.store._sqlite_db import load_queries
from mcpexec.store._sqlite_rows import RUN_COLUMNS
from mcpexec.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

#: Columns of ``runs`` that are the queue's own, not fields of ``Run``.
# tool: `server.tool` of a tool run, copied from the spec for the list's index (0013).
PRIVATE_RUN_COLUMNS = {"available_at", "lease_expires_at", "tool"}
_PARAM = re.compile(r"(?<!:):(\w+)")


def numbering_problems(numbers: dict[str, list[int]]) -> list[str]:
    """What differs between the dialects' migration numbers (each must be 1..n, all alike)."""
    problems = []
    every = sorted(set().union(*numbers.values())) if numbers else []
    for dialect, found in sorted(numbers.items()):
        if found != list(range(1, len(found) + 1)):
            problems.append(f"{dialect}: numbers {found} have gaps or repeats")
        problems.extend(f"{dialect} lacks {n:04d}" for n in every if n not in found)
    return problems


def test_every_dialect_has_the_same_migration_numbers() -> None:
    found = {d: migration_numbers(d) for d in dialects()}
    assert {"sqlite", "postgres"} <= set(found)
    assert numbering_problems(found) == []


def test_a_dialect_lacking_a_number_is_reported(tmp_path: Path) -> None:
    for dialect, names in {
        "sqlite": ["0001_initial.sql", "0002_attempt_isolation.sql"],
        "postgres": ["0001_initial.sql"],
    }.items():
        (tmp_path / dialect).mkdir()
        for name in names:
            (tmp_path / dialect / name).write_text("SELECT 1;")
    found = {d: migration_numbers(d, tmp_path) for d in dialects(tmp_path)}
    assert found == {"postgres": [1], "sqlite": [1, 2]}
    assert numbering_problems(found) == ["postgres lacks 0002"]
    (tmp_path / "postgres" / "0003_later.sql").write_text("SELECT 1;")
    with pytest.raises(StoreError, match="without gaps"):
        load_migrations("postgres", tmp_path)


def test_every_dialect_with_migrations_has_its_queries() -> None:
    root = _migrations.migrations_root().joinpath("..", "sql")
    for dialect in dialects():
        assert root.joinpath(dialect, "queries.sql").is_file(), dialect


def test_the_runner_applies_what_is_missing_and_refuses_a_newer_schema() -> None:
    applied: list[int] = []
    total = len(load_migrations("sqlite"))
    assert migrate("sqlite", 1, lambda m: applied.append(m.number)) == total
    assert applied == list(range(2, total + 1))
    assert migrate("sqlite", total, lambda m: applied.append(-1)) == total
    assert -1 not in applied
    with pytest.raises(StoreError, match="newer"):
        migrate("sqlite", total + 1, lambda m: None)


@pytest.fixture
async def migrated(tmp_path: Path) -> sqlite3.Connection:
    store = SqliteStore(tmp_path / "mcpexec.db")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "mcpexec.db")
    conn.row_factory = sqlite3.Row
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}


async def test_every_named_query_compiles_against_the_migrated_schema(
    migrated: sqlite3.Connection,
) -> None:
    queries = load_queries()
    assert len(queries) > 20
    for name, sql in queries.items():
        params = {p: None for p in _PARAM.findall(sql)}
        try:
            migrated.execute(f"EXPLAIN {sql}", params)
        except sqlite3.Error as exc:
            pytest.fail(f"query {name!r} does not fit the schema: {exc}")


async def test_the_runs_table_is_the_run_model_plus_the_queue_columns(
    migrated: sqlite3.Connection,
) -> None:
    assert _columns(migrated, "runs") == set(RUN_COLUMNS) | PRIVATE_RUN_COLUMNS


async def test_the_attempts_table_holds_every_attempt_field(migrated: sqlite3.Connection) -> None:
    expected = (set(Attempt.model_fields) - {"failure"}) | {"failure_kind", "failure_message"}
    assert _columns(migrated, "attempts") == expected
