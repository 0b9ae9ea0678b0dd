"""The one store contract suite: every test taking ``store`` runs against every implementation.

To add an implementation (e.g. PostgreSQL), register ONE factory with ``@contract_store``: an
async context manager that yields a not-yet-opened store for a test's ``tmp_path`` and cleans up
after it. A store on a real server finds it through ``servers.server_url``, which skips the
test locally and fails it under ``CI=true`` when the server is missing::

    @contract_store("postgres")
    @asynccontextmanager
    async def postgres(tmp_path: Path) -> AsyncIterator[Store]:
        url = server_url("TEST_POSTGRES_URL", "PostgreSQL")
        yield open_store(url)  # plus: a fresh schema per test, dropped afterwards

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
