"""Concurrent submits: what SQLite's group commit must not change about ``enqueue``."""

from __future__ import annotations

import asyncio

import pytest

from mcpexec.errors import Conflict
from mcpexec.models import RunFilter
from mcpexec.store.base import Store

from .contract_helpers import new_run

pytestmark = pytest.mark.anyio


async def test_concurrent_enqueues_each_answered_and_isolated(store: Store) -> None:
    fresh = [new_run(f"c-{i}") for i in range(40)]
    same_key = [new_run(f"k-{i}", key="shared") for i in range(5)]
    duplicate_id = new_run("c-0")
    results = await asyncio.gather(
        *(store.enqueue(n) for n in [*fresh, *same_key, duplicate_id]), return_exceptions=True
    )
    *ok, conflict = results
    assert isinstance(conflict, Conflict)
    assert not any(isinstance(r, BaseException) for r in ok)
    created = [r for r in ok if not isinstance(r, BaseException) and r[1]]
    keyed = [r[0].id for r in ok[40:] if not isinstance(r, BaseException)]
    assert len(set(keyed)) == 1  # one run for the shared key, whichever came first
    assert len(created) == 41
    page = await store.list_runs(RunFilter(), 100, None)
    assert len(page.runs) == 41
