"""WalSyncer: durable commits answered only after an fdatasync of the WAL, shared by those that
wait together; a failed sync is every waiter's error; a replaced WAL file is reopened."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from mcpexec.errors import StoreError
from mcpexec.models import DEFAULT_RETRY, ExecSpec, utcnow
from mcpexec.store._sqlite_sync import WalSyncer
from mcpexec.store.base import NewRun
from mcpexec.store.sqlite import SqliteStore


def _new(run_id: str) -> NewRun:
    return NewRun(
        id=run_id,
        tenant="default",
        spec=ExecSpec(command=["true"]),
        retry=DEFAULT_RETRY,
        priority=0,
        labels={},
        created_at=utcnow(),
    )


def test_a_durable_enqueue_returns_after_a_sync_and_syncs_are_shared(tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        store = SqliteStore(tmp_path / "db.sqlite")
        await store.open()
        try:
            syncer = store._db._syncer
            await store.enqueue(_new("first"))
            after_one = syncer.syncs
            await asyncio.gather(*(store.enqueue(_new(f"r-{i}")) for i in range(50)))
            return after_one, syncer.syncs - after_one
        finally:
            await store.close()

    after_one, for_fifty = asyncio.run(main())
    assert after_one == 1
    assert 1 <= for_fifty < 50  # group-committed and synced together


def test_a_failed_sync_fails_every_waiter_and_the_next_sync_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    Path(f"{db}-wal").write_bytes(b"frames")
    syncer = WalSyncer(db)
    real = os.fdatasync
    failing = threading.Event()
    failing.set()

    def fdatasync(fd: int) -> None:
        if failing.is_set():
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    results: list[BaseException | None] = []
    done = threading.Event()

    def answer(error: BaseException | None) -> None:
        results.append(error)
        done.set()

    try:
        syncer.after_commit(answer)
        assert done.wait(10)
        assert isinstance(results[0], StoreError)
        assert "could not sync the WAL" in str(results[0])
        failing.clear()
        done.clear()
        syncer.after_commit(answer)
        assert done.wait(10)
        assert results[1] is None
    finally:
        syncer.close()
    with pytest.raises(StoreError):
        syncer.after_commit(answer)


def test_a_replaced_wal_file_is_reopened(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    wal = Path(f"{db}-wal")
    wal.write_bytes(b"one")
    syncer = WalSyncer(db)
    answered: list[BaseException | None] = []
    done = threading.Event()

    def answer(error: BaseException | None) -> None:
        answered.append(error)
        done.set()

    try:
        syncer.after_commit(answer)
        assert done.wait(10)
        first = os.fstat(syncer._fd).st_ino
        replacement = tmp_path / "new-wal"
        replacement.write_bytes(b"two")
        os.replace(replacement, wal)
        done.clear()
        syncer.after_commit(answer)
        assert done.wait(10)
        assert os.fstat(syncer._fd).st_ino == wal.stat().st_ino != first
        assert answered == [None, None]
    finally:
        syncer.close()
