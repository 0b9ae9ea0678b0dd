"""The one store contract suite: every test taking ``store`` runs against every implementation.

To add an implementation (e.g. PostgreSQL), add one entry to ``STORES``. ``anyio_backend``
comes from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mcpexec.store.base import Store
from mcpexec.store.memory import MemoryStore
from mcpexec.store.sqlite import SqliteStore

STORES: dict[str, Callable[[Path], Store]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SqliteStore(tmp / "mcpexec.db"),
}


@pytest.fixture(params=sorted(STORES))
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Store]:
    instance = STORES[request.param](tmp_path)
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()
