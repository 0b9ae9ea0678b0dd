"""The one store contract suite: every test taking ``store`` runs against every implementation.

To add an implementation, register ONE factory with ``@contract_store``: an async context
manager that yields a not-yet-opened store for a test's ``tmp_path`` and cleans up after it. A
store on a real server skips the test locally and fails it under ``CI=true`` when the server is
missing (``servers.missing``): PostgreSQL gets a fresh schema per test in the session's
throwaway database (``tests/pg_server.py``).

``anyio_backend`` comes from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from mcpexec.store.base import Store
from mcpexec.store.memory import MemoryStore
from mcpexec.store.sqlite import SqliteStore
from mcpexec.store.url import open_store
from pg_server import fresh_schema

StoreFactory = Callable[[Path], AbstractAsyncContextManager[Store]]
STORES: dict[str, StoreFactory] = {}


def contract_store(name: str) -> Callable[[StoreFactory], StoreFactory]:
    def register(factory: StoreFactory) -> StoreFactory:
        STORES[name] = factory
        return factory

    return register


@contract_store("memory")
@asynccontextmanager
async def memory(tmp_path: Path) -> AsyncIterator[Store]:
    yield MemoryStore()


@contract_store("sqlite")
@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Store]:
    yield SqliteStore(tmp_path / "mcpexec.db")


@contract_store("postgres")
@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[Store]:
    with fresh_schema() as url:
        yield open_store(url)


@pytest.fixture(params=sorted(STORES))
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path) as instance:
        await instance.open()
        try:
            yield instance
        finally:
            await instance.close()
