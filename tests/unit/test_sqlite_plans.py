"""The worker's hot statements use the index they were written for, on a database without
statistics (mcpexec runs no ANALYZE): SQLite's planner, left to itself, took ``runs_status``
for the claim's ready tenants and walked every pending run (0.4 ms per claim at a backlog of
2,000; docs/benchmarks.md, 2026-12-07)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from mcpexec.store._sqlite_db import load_queries
from mcpexec.store.sqlite import SqliteStore

#: Statements run per claim or per worker wake-up whatever the backlog, and per tenant on
#: every /metrics scrape.
HOT = ("claim_ready_tenants", "claim_heads", "next_available_at", "expired_leases", "tenant_load")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "db.sqlite"

    async def migrate() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    return path


@pytest.mark.parametrize("name", HOT)
def test_a_hot_statement_walks_no_backlog(database: Path, name: str) -> None:
    statement = load_queries()[name]
    params = dict.fromkeys(re.findall(r":(\w+)", statement))
    conn = sqlite3.connect(database)
    try:
        assert (
            conn.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchall()
            == []
        )
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
    finally:
        conn.close()
    # runs_status (status, seq) answers "pending" only by walking every pending run; a SCAN of
    # runs walks the whole table.
    assert not [step for step in plan if "runs_status" in step or step.startswith("SCAN runs")], (
        plan
    )


def test_the_unread_runs_ready_index_is_gone(database: Path) -> None:
    """Every index of ``runs`` costs each submit or transition an entry. ``runs_ready`` (0001)
    was read by no statement once the claim went per tenant (migration 0017 drops it)."""
    conn = sqlite3.connect(database)
    try:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
            )
        }
    finally:
        conn.close()
    assert "runs_ready" not in names
