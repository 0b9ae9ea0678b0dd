"""Contract: logs and artifacts, workers, tokens."""

from __future__ import annotations

import pytest

from mcpexec.errors import Conflict
from mcpexec.models import Artifact, Stream
from mcpexec.store.base import Store, TokenRecord, WorkerInfo

from .contract_helpers import T0, claim_one, failed, new_run, t

pytestmark = pytest.mark.anyio


async def test_log_offsets_count_bytes_across_attempts(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store, "w1")
    assert await store.append_log("a", 1, "w1", Stream.STDOUT, b"hello ") == 0
    assert await store.append_log("a", 1, "w1", Stream.STDERR, b"oops") == 0
    assert await store.append_log("a", 1, "w1", Stream.STDOUT, b"") == 6  # empty: no-op
    assert await store.append_log("a", 1, "w1", Stream.STDOUT, "wörld".encode()) == 6
    await store.finish_attempt("a", 1, "w1", failed(), t(1), retry_at=t(2))
    assert await store.append_log("a", 1, "w1", Stream.STDOUT, b"late") is None
    await claim_one(store, "w2", t(2))
    assert await store.append_log("a", 2, "w2", Stream.STDOUT, b"\x00\xffbin") == 12
    everything = "hello wörld".encode() + b"\x00\xffbin"
    assert await store.read_log("a", Stream.STDOUT, 0, 1000) == (everything, len(everything))
    assert await store.read_log("a", Stream.STDERR, 0, 1000) == (b"oops", 4)


async def test_read_log_windows(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    data = bytes(range(256)) * 4
    chunks = [data[i : i + size] for i, size in _chunking(len(data))]
    for chunk in chunks:
        await store.append_log("a", 1, "w1", Stream.STDOUT, chunk)
    assert b"".join(chunks) == data
    for offset in (0, 1, 6, 7, 100, 511, 1000, 1023):
        for limit in (1, 2, 7, 64, 500, 5000):
            got, nxt = await store.read_log("a", Stream.STDOUT, offset, limit)
            assert got == data[offset : offset + limit], (offset, limit)
            assert nxt == offset + len(got)
    assert await store.read_log("a", Stream.STDOUT, 1024, 10) == (b"", 1024)
    assert await store.read_log("a", Stream.STDOUT, 5000, 10) == (b"", 5000)
    assert await store.read_log("a", Stream.STDOUT, 10, 0) == (b"", 10)
    assert await store.read_log("a", Stream.STDERR, 0, 10) == (b"", 0)
    assert await store.read_log("unknown", Stream.STDOUT, 3, 10) == (b"", 3)
    # paging through with the returned next offset reassembles the stream
    out, offset = b"", 0
    while True:
        got, offset = await store.read_log("a", Stream.STDOUT, offset, 100)
        if not got:
            break
        out += got
    assert out == data


def _chunking(total: int) -> list[tuple[int, int]]:
    """Chunks of uneven sizes (1, 7, 13, …) covering ``total`` bytes."""
    spans, start, size = [], 0, 1
    while start < total:
        spans.append((start, min(size, total - start)))
        start += size
        size = size * 3 % 97 + 1
    return spans


def _artifact(name: str, attempt: int, size: int = 1, run_id: str = "a") -> Artifact:
    return Artifact(
        run_id=run_id, name=name, size=size, sha256=f"{size:064x}", attempt=attempt, created_at=T0
    )


async def test_artifacts_are_listed_by_name_and_replaced_by_later_attempts(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store, "w1")
    assert await store.add_artifact(_artifact("z.txt", 1), "w1")
    assert await store.add_artifact(_artifact("a.txt", 1, size=5), "w1")
    assert await store.add_artifact(_artifact("a.txt", 1, size=6), "w1")  # same attempt: replaced
    assert [(a.name, a.size) for a in await store.list_artifacts("a")] == [
        ("a.txt", 6),
        ("z.txt", 1),
    ]
    await store.finish_attempt("a", 1, "w1", failed(), t(1), retry_at=t(2))
    assert not await store.add_artifact(_artifact("late", 1), "w1")
    await claim_one(store, "w2", t(2))
    assert await store.add_artifact(_artifact("z.txt", 2, size=9), "w2")
    listed = await store.list_artifacts("a")
    assert [(a.name, a.attempt, a.size) for a in listed] == [("a.txt", 1, 6), ("z.txt", 2, 9)]
    assert listed[0] == _artifact("a.txt", 1, size=6)
    assert await store.list_artifacts("unknown") == []


async def test_workers_register_list_remove(store: Store) -> None:
    assert await store.list_workers() == []
    w2 = WorkerInfo("w2", "host-b", 22, 8, T0, t(1), running=3)
    w1 = WorkerInfo("w1", "host-a", 11, 4, T0, T0)
    await store.register_worker(w2)
    await store.register_worker(w1)
    assert await store.list_workers() == [w1, w2]
    restarted = WorkerInfo("w1", "host-a", 12, 2, t(5), t(5))
    await store.register_worker(restarted)  # insert or replace
    assert await store.list_workers() == [restarted, w2]
    await store.heartbeat("w2", [], t(9), t(39))
    assert (await store.list_workers())[1].heartbeat_at == t(9)
    await store.remove_worker("w1")
    await store.remove_worker("w1")  # idempotent
    assert [w.id for w in await store.list_workers()] == ["w2"]


async def test_tokens(store: Store) -> None:
    assert await store.list_tokens() == []
    # A token without a principal is its own (the principal's id is the token's).
    admin = TokenRecord("t1", "admin", "h1", "admin", "default", T0, principal_id="t1")
    agent = TokenRecord(
        "t2", "agent", "h2", "submitter", "acme", t(1), revoked=True, principal_id="t2"
    )
    await store.add_token(agent)
    await store.add_token(admin)
    assert await store.token_by_hash("h1") == admin
    assert await store.token_by_hash("h2") == agent  # revoked ones are returned too
    assert await store.token_by_hash("nope") is None
    assert await store.list_tokens() == [admin, agent]
    with pytest.raises(Conflict):
        await store.add_token(TokenRecord("t3", "dup", "h1", "admin", "default", T0))
    with pytest.raises(Conflict):
        await store.add_token(TokenRecord("t1", "dup", "h9", "admin", "default", T0))
    assert len(await store.list_tokens()) == 2


def _sized(run_id: str, name: str, size: int, attempt: int = 1) -> Artifact:
    return Artifact(
        run_id=run_id, name=name, size=size, sha256="0" * 64, attempt=attempt, created_at=T0
    )


async def test_storage_used_counts_logs_and_artifacts_per_tenant(store: Store) -> None:
    assert await store.storage_used() == 0
    await store.enqueue(new_run("a", tenant="t1"))
    await store.enqueue(new_run("b", tenant="t2"))
    await claim_one(store, "w1")
    await claim_one(store, "w1")
    await store.append_log("a", 1, "w1", Stream.STDOUT, b"12345")
    await store.append_log("a", 1, "w1", Stream.STDERR, b"678")
    await store.append_log("b", 1, "w1", Stream.STDOUT, b"x")
    assert await store.add_artifact(_sized("a", "f", 100), "w1")
    assert (await store.storage_used("t1"), await store.storage_used("t2")) == (108, 1)
    assert await store.storage_used() == 109
    # a replaced artifact gives its size back; fenced-out writes count nothing
    assert await store.add_artifact(_sized("a", "f", 40), "w1")
    assert await store.append_log("a", 1, "w2", Stream.STDOUT, b"nope") is None
    assert not await store.add_artifact(_sized("a", "g", 7), "w2")
    assert await store.storage_used("t1") == 48
    assert await store.storage_used("nobody") == 0
    # a purged run gives back everything it held
    await store.finish_attempt("a", 1, "w1", failed(), t(1), None)
    assert await store.purge_finished(t(2)) == ["a"]
    assert (await store.storage_used("t1"), await store.storage_used()) == (0, 1)
