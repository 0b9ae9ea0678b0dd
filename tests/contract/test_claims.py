"""Contract: claim order, leases and heartbeats, fencing, finishing, the reaper, cancellation."""

from __future__ import annotations

import pytest

from mcpexec.models import Artifact, FailureKind, Progress, RunStatus, Stream
from mcpexec.store.base import AttemptOutcome, Store, WorkerInfo

from .contract_helpers import LEASE, OK, T0, claim_one, enqueue, failed, new_run, t

pytestmark = pytest.mark.anyio


async def test_claim_order_is_priority_then_fifo(store: Store) -> None:
    await enqueue(
        store,
        new_run("low", priority=-10),
        new_run("n1"),
        new_run("high1", priority=10),
        new_run("n2"),
        new_run("high2", priority=10),
    )
    claims = await store.claim("w1", 10, T0, T0 + LEASE)
    assert [c.run.id for c in claims] == ["high1", "high2", "n1", "n2", "low"]


async def test_claim_marks_running_with_lease_and_attempt_row(store: Store) -> None:
    await store.enqueue(new_run("a"))
    claim = await claim_one(store, "w1", t(5))
    assert claim.attempt == 1
    assert claim.lease_expires_at == t(5) + LEASE
    run = claim.run
    assert run.status == RunStatus.RUNNING
    assert (run.attempts, run.worker_id, run.started_at) == (1, "w1", t(5))
    assert await store.get_run("a") == run
    [attempt] = await store.attempts("a")
    assert (attempt.number, attempt.worker_id, attempt.status) == (1, "w1", RunStatus.RUNNING)
    assert attempt.started_at == t(5)
    assert attempt.finished_at is None


async def test_claim_limit_and_nothing_claimed_twice(store: Store) -> None:
    await enqueue(store, *(new_run() for _ in range(5)))
    first = await store.claim("w1", 2, T0, T0 + LEASE)
    second = await store.claim("w2", 2, T0, T0 + LEASE)
    third = await store.claim("w3", 2, T0, T0 + LEASE)
    assert (len(first), len(second), len(third)) == (2, 2, 1)
    ids = [c.run.id for c in first + second + third]
    assert len(set(ids)) == 5
    assert await store.claim("w4", 2, T0, T0 + LEASE) == []
    assert await store.claim("w4", 0, T0, T0 + LEASE) == []


async def test_delayed_run_waits_for_run_at(store: Store) -> None:
    await store.enqueue(new_run("later", run_at=t(60), priority=50))
    await store.enqueue(new_run("now"))
    assert [c.run.id for c in await store.claim("w1", 5, t(59), t(90))] == ["now"]
    assert await store.claim("w1", 5, t(59.999999), t(90)) == []
    assert [c.run.id for c in await store.claim("w1", 5, t(60), t(90))] == ["later"]


async def test_cancelled_pending_run_is_never_claimed(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"))
    await store.request_cancel("a", T0)
    assert [c.run.id for c in await store.claim("w1", 5, t(1), t(31))] == ["b"]


async def test_attempts_are_numbered_across_retries(store: Store) -> None:
    await store.enqueue(new_run("a"))
    one = await claim_one(store, "w1", t(0))
    run = await store.finish_attempt("a", 1, "w1", failed(), t(1), retry_at=t(10))
    assert run is not None
    assert run.status == RunStatus.PENDING
    assert run.next_attempt_at == t(10)
    assert run.finished_at is None
    assert run.failure is not None
    assert run.failure.kind == FailureKind.EXIT_CODE
    assert await store.claim("w2", 1, t(9), t(40)) == []  # available again only at retry_at
    two = await claim_one(store, "w2", t(10))
    assert (one.attempt, two.attempt) == (1, 2)
    assert two.run.started_at == t(0)  # set on the first attempt only
    assert two.run.next_attempt_at is None
    done = await store.finish_attempt("a", 2, "w2", OK, t(11), None)
    assert done is not None
    assert done.status == RunStatus.COMPLETED
    assert done.failure is None
    attempts = await store.attempts("a")
    assert [(a.number, a.worker_id, a.status) for a in attempts] == [
        (1, "w1", RunStatus.FAILED),
        (2, "w2", RunStatus.COMPLETED),
    ]
    assert attempts[0].failure is not None
    assert attempts[0].exit_code == 1
    assert attempts[0].finished_at == t(1)
    assert attempts[0].duration_s == 1.0


async def test_finish_completed(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    outcome = AttemptOutcome(succeeded=True, exit_code=0, result={"x": [1, "é"]})
    run = await store.finish_attempt("a", 1, "w1", outcome, t(3), None)
    assert run is not None
    assert (run.status, run.exit_code, run.result) == (RunStatus.COMPLETED, 0, {"x": [1, "é"]})
    assert run.finished_at == t(3)
    assert not run.partial
    assert await store.get_run("a") == run
    assert await store.expired_leases(t(1000)) == []


async def test_finish_failed_records_failure_signal_and_truncation(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    outcome = AttemptOutcome(
        succeeded=False,
        signal=9,
        failure=failed(FailureKind.SIGNAL, "killed").failure,
        output_truncated=True,
    )
    run = await store.finish_attempt("a", 1, "w1", outcome, t(3), None)
    assert run is not None
    assert run.status == RunStatus.FAILED
    assert run.failure == outcome.failure
    assert run.output_truncated
    assert not run.partial
    [attempt] = await store.attempts("a")
    assert attempt.signal == 9
    assert attempt.output_truncated
    assert attempt.failure == outcome.failure


async def test_finish_records_isolation_and_limits(store: Store) -> None:
    await store.enqueue(new_run("a"))
    assert (await claim_one(store)).run.id == "a"
    [running] = await store.attempts("a")
    assert (running.isolation, running.limits) == (None, None)
    limits = {"memory_mb": 256, "memory_by": "cgroup-v1", "pids": 64, "network": False}
    outcome = AttemptOutcome(
        succeeded=True, exit_code=0, isolation="bwrap(default) uid=65534", limits=limits
    )
    assert await store.finish_attempt("a", 1, "w1", outcome, t(3), None) is not None
    [attempt] = await store.attempts("a")
    assert attempt.isolation == "bwrap(default) uid=65534"
    assert attempt.limits == limits


async def test_failed_with_artifacts_is_partial(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    artifact = Artifact(
        run_id="a", name="out.txt", size=3, sha256="a" * 64, attempt=1, created_at=T0
    )
    assert await store.add_artifact(artifact, "w1")
    run = await store.finish_attempt("a", 1, "w1", failed(), t(1), None)
    assert run is not None
    assert run.status == RunStatus.FAILED
    assert run.partial


async def test_cancel_requested_then_failure_is_cancelled(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    requested = await store.request_cancel("a", t(1))
    assert requested is not None
    assert requested.status == RunStatus.RUNNING
    assert requested.cancel_requested
    # cancellation also beats a retry the caller offered
    run = await store.finish_attempt("a", 1, "w1", failed(FailureKind.SIGNAL), t(2), t(5))
    assert run is not None
    assert run.status == RunStatus.CANCELLED
    assert run.failure is not None
    assert run.failure.kind == FailureKind.CANCELLED
    assert run.finished_at == t(2)
    assert run.next_attempt_at is None
    [attempt] = await store.attempts("a")
    assert attempt.status == RunStatus.CANCELLED


async def test_failure_kind_cancelled_cancels_and_success_wins_over_cancel(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"))
    await store.claim("w1", 2, T0, T0 + LEASE)
    run = await store.finish_attempt("a", 1, "w1", failed(FailureKind.CANCELLED), t(1), None)
    assert run is not None
    assert run.status == RunStatus.CANCELLED
    await store.request_cancel("b", t(1))
    done = await store.finish_attempt("b", 1, "w1", OK, t(2), None)
    assert done is not None
    assert done.status == RunStatus.COMPLETED
    assert done.failure is None


async def test_fencing_wrong_worker_or_stale_attempt_changes_nothing(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store, "w1")
    before = await store.get_run("a")
    art = Artifact(run_id="a", name="f", size=1, sha256="b" * 64, attempt=1, created_at=T0)
    stale = art.model_copy(update={"attempt": 2})
    assert await store.finish_attempt("a", 1, "w2", OK, t(1), None) is None
    assert await store.finish_attempt("a", 2, "w1", OK, t(1), None) is None
    assert await store.finish_attempt("nope", 1, "w1", OK, t(1), None) is None
    assert not await store.record_progress("a", 1, "w2", Progress(value=0.5))
    assert not await store.record_progress("a", 0, "w1", Progress(value=0.5))
    assert await store.append_log("a", 1, "w2", Stream.STDOUT, b"x") is None
    assert not await store.add_artifact(art, "w2")
    assert not await store.add_artifact(stale, "w1")
    assert await store.get_run("a") == before
    assert await store.list_artifacts("a") == []
    assert await store.read_log("a", Stream.STDOUT, 0, 10) == (b"", 0)


async def test_a_finished_attempt_is_fenced_out(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    await store.finish_attempt("a", 1, "w1", failed(), t(1), retry_at=t(2))
    assert await store.finish_attempt("a", 1, "w1", OK, t(3), None) is None
    assert not await store.record_progress("a", 1, "w1", Progress(value=1.0))
    run = await store.get_run("a")
    assert run is not None
    assert run.status == RunStatus.PENDING


async def test_progress_is_recorded(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    assert await store.record_progress("a", 1, "w1", Progress(value=0.25, message="step 1"))
    assert await store.record_progress("a", 1, "w1", Progress(message="step 2"))
    run = await store.get_run("a")
    assert run is not None
    assert run.progress == Progress(message="step 2")


async def test_heartbeat_renews_reports_cancel_and_lost(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"), new_run("c"))
    await store.register_worker(WorkerInfo("w1", "host", 1, 4, T0, T0))
    claims = await store.claim("w1", 3, T0, T0 + LEASE)
    assert [c.run.id for c in claims] == ["a", "b", "c"]
    await store.request_cancel("b", t(1))
    await store.finish_attempt("c", 1, "w1", OK, t(2), None)
    held = [("a", 1), ("b", 1), ("c", 1), ("x", 1), ("a", 7)]
    reply = await store.heartbeat("w1", held[:4], t(20), t(50))
    assert reply.cancel == {"b"}
    assert reply.lost == {"c", "x"}
    assert [c.run.id for c in await store.expired_leases(t(49))] == []
    assert {c.run.id for c in await store.expired_leases(t(50))} == {"a", "b"}
    [worker] = await store.list_workers()
    assert worker.heartbeat_at == t(20)
    assert worker.running == 2
    # another worker cannot renew, and a wrong attempt number is lost
    reply = await store.heartbeat("w2", [("a", 1)], t(21), t(99))
    assert reply.lost == {"a"}
    assert (await store.heartbeat("w1", [("a", 7)], t(21), t(99))).lost == {"a"}
    assert {c.run.id for c in await store.expired_leases(t(50))} == {"a", "b"}


async def test_reaper_finishes_expired_leases(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"))
    await store.claim("w1", 1, t(0), t(30))
    await store.claim("w2", 1, t(10), t(40))
    assert await store.expired_leases(t(29)) == []
    [expired] = await store.expired_leases(t(35))
    assert (expired.run.id, expired.attempt, expired.lease_expires_at) == ("a", 1, t(30))
    assert expired.run.worker_id == "w1"
    assert [c.run.id for c in await store.expired_leases(t(100))] == ["a", "b"]
    assert len(await store.expired_leases(t(100), limit=1)) == 1
    lost = failed(FailureKind.WORKER_LOST, "worker w1 stopped heartbeating")
    run = await store.finish_attempt("a", 1, "w1", lost, t(35), t(36), lease_expired_before=t(35))
    assert run is not None
    assert run.status == RunStatus.PENDING
    again = await claim_one(store, "w3", t(36))
    assert (again.run.id, again.attempt) == ("a", 2)


async def test_a_renewed_lease_wins_the_race_with_the_reaper(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store, "w1", t(0))
    [_expired] = await store.expired_leases(t(31))
    await store.heartbeat("w1", [("a", 1)], t(31), t(61))  # the worker renews first
    lost = failed(FailureKind.WORKER_LOST)
    reaped = await store.finish_attempt("a", 1, "w1", lost, t(31), None, lease_expired_before=t(31))
    assert reaped is None
    run = await store.get_run("a")
    assert run is not None
    assert run.status == RunStatus.RUNNING
    assert await store.finish_attempt("a", 1, "w1", OK, t(32), None) is not None


async def test_expire_worker_ends_its_leases_and_removes_it(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"), new_run("c"))
    await store.register_worker(WorkerInfo("w1", "host", 1, 4, T0, T0))
    await store.register_worker(WorkerInfo("w2", "host", 2, 4, T0, T0))
    await store.claim("w1", 2, t(0), t(300))
    await store.claim("w2", 1, t(0), t(300))
    assert await store.expire_worker("w1", t(5)) == 2
    assert [w.id for w in await store.list_workers()] == ["w2"]
    expired = await store.expired_leases(t(5))
    assert sorted(c.run.id for c in expired) == ["a", "b"]
    assert all(c.lease_expires_at == t(5) for c in expired)
    # it still holds them until the reaper finishes them; an earlier end is kept
    assert await store.expire_worker("w1", t(6)) == 2
    assert all(c.lease_expires_at == t(5) for c in await store.expired_leases(t(6)))
    assert await store.expire_worker("ghost", t(6)) == 0


async def test_request_cancel_pending_running_terminal(store: Store) -> None:
    await enqueue(store, new_run("p"), new_run("r", tenant="t2"), new_run("d"))
    assert await store.request_cancel("nope", t(1)) is None
    cancelled = await store.request_cancel("p", t(1))
    assert cancelled is not None
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.failure is not None
    assert cancelled.failure.kind == FailureKind.CANCELLED
    assert cancelled.finished_at == t(1)
    assert not cancelled.partial
    assert await store.request_cancel("p", t(2)) == cancelled  # idempotent

    await store.claim("w1", 2, t(1), t(31))
    assert await store.request_cancel("r", t(2), tenant="default") is None  # other tenant
    running = await store.get_run("r")
    assert running is not None
    assert not running.cancel_requested
    flagged = await store.request_cancel("r", t(2), tenant="t2")
    assert flagged is not None
    assert flagged.status == RunStatus.RUNNING
    assert flagged.cancel_requested
    assert await store.request_cancel("r", t(3)) == flagged

    await store.finish_attempt("d", 1, "w1", OK, t(4), None)
    done = await store.get_run("d")
    assert await store.request_cancel("d", t(5)) == done
    assert done is not None
    assert done.status == RunStatus.COMPLETED


async def test_cancel_while_waiting_for_a_retry(store: Store) -> None:
    await store.enqueue(new_run("a"))
    await claim_one(store)
    art = Artifact(run_id="a", name="f", size=1, sha256="c" * 64, attempt=1, created_at=T0)
    await store.add_artifact(art, "w1")
    await store.finish_attempt("a", 1, "w1", failed(), t(1), retry_at=t(100))
    run = await store.request_cancel("a", t(2))
    assert run is not None
    assert run.status == RunStatus.CANCELLED
    assert run.next_attempt_at is None
    assert run.partial
    assert await store.claim("w1", 1, t(100), t(130)) == []


async def test_a_failure_message_with_nul_does_not_break_the_finish(store: Store) -> None:
    await store.enqueue(new_run("nul"))
    claim = await claim_one(store)
    done = await store.finish_attempt(
        "nul", claim.attempt, "w1", failed(message="out: a\0b"), T0, retry_at=None
    )
    assert done is not None
    assert done.status == "failed"
    assert done.failure is not None
    # SQLite and memory keep the NUL; PostgreSQL text cannot hold one and stores U+FFFD.
    assert done.failure.message in ("out: a\0b", "out: a\ufffdb")
    [attempt] = await store.attempts("nul")
    assert attempt.failure == done.failure
