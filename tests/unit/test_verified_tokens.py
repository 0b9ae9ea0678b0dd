"""Verified tokens are trusted for VERIFIED_FOR_S without a store read; a revocation through
this process is refused at once, one made elsewhere (straight in the shared store) once that
time has passed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import Unauthorized
from mcpexec.executor.fake import FakeExecutor
from mcpexec.settings import Settings
from mcpexec.store.base import TokenRecord
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.tenant_ops import VERIFIED_FOR_S, TenantOps

pytestmark = pytest.mark.anyio
ADMIN = Principal("t0", "test", "admin", "default")


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        self.lookups += 1
        return await super().token_by_hash(token_hash)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(home=tmp_path)
    app = App(settings, CountingStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    yield app
    await app.close()


async def test_verified_tokens_are_trusted_briefly_and_revocation_here_is_immediate(
    app: App,
) -> None:
    store = app.store
    assert isinstance(store, CountingStore)
    clock = Clock()
    ops = TenantOps(app, clock=clock)
    token, record = await ops.issue_token("ci", "submitter", "default")
    other, other_record = await ops.issue_token("other", "submitter", "default")
    assert (await ops.authenticate(token)).id == record.id
    assert (await ops.authenticate(token)).id == record.id
    assert store.lookups == 1  # the second request asked no store
    # Revoked through this process: refused at the very next request.
    await ops.revoke_token(ADMIN, record.id)
    with pytest.raises(Unauthorized):
        await ops.authenticate(token)
    # Revoked by another process (straight in the shared store): trusted until the time is up.
    assert (await ops.authenticate(other)).id == other_record.id
    assert await store.revoke_token(other_record.id, None) is not None
    clock.now += VERIFIED_FOR_S / 2
    assert (await ops.authenticate(other)).id == other_record.id
    clock.now += VERIFIED_FOR_S
    with pytest.raises(Unauthorized):
        await ops.authenticate(other)
    # Unknown and revoked tokens are never remembered: each is asked for again.
    before = store.lookups
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await ops.authenticate("mcx_not-a-token")
    assert store.lookups == before + 3
