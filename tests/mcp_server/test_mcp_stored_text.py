"""A run stored before text was validated at the edge (a label with a lone surrogate) must not
break MCP reads over a real transport: the character comes back as U+FFFD, as over REST."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from acceptance.conftest import make_server
from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.store.base import NewRun
from mcpexec.store.sqlite import SqliteStore

from .test_mcp_http import data, mcp_client

pytestmark = pytest.mark.anyio


async def _store_old_run(db: Path) -> str:
    store = SqliteStore(db)
    await store.open()
    new = NewRun(
        id=uuid.uuid4().hex,
        tenant="default",
        spec=ExecSpec(shell="echo old"),
        retry=DEFAULT_RETRY,
        priority=0,
        labels={"a": "\ud800"},
        created_at=datetime.now(UTC),
    )
    run, _ = await store.enqueue(new)
    await store.close()
    return run.id


async def test_a_stored_lone_surrogate_reads_as_replacement_over_mcp_http(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=0)
    run_id = await _store_old_run(srv.home / "mcpexec.db")
    await asyncio.to_thread(srv.start)
    try:
        async with mcp_client(srv, "auto", srv.token) as client:
            listed = data(await client.call_tool("list_runs", {}))
            got = data(await client.call_tool("get_run", {"run_id": run_id}))
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert listed["runs"][0]["labels"] == {"a": "\ufffd"}
        assert got["labels"] == {"a": "\ufffd"}
    finally:
        await asyncio.to_thread(srv.stop)
