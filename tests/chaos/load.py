"""Load and bookkeeping for the chaos tests: submitters that never lose a submit, and the audit
of every accepted run (terminal as its retry policy says, none stuck, none lost, each duplicate
explained by a lease expiry)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from .cluster import Cluster

TERMINAL = {"completed", "failed", "cancelled"}
#: The failure kind a reaper gives an attempt whose lease expired (its worker died, was cut
#: off, or stopped heartbeating): the one explanation of a run executed twice.
LEASE_EXPIRY = "worker_lost"


@dataclass
class Submits:
    """What the submitters saw: every run that answered 202/200, and every refusal."""

    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> run id
    unavailable: int = 0  # 503 store_unavailable answers
    bad_unavailable: list[str] = field(default_factory=list)  # a 503 without code/Retry-After
    transport_errors: int = 0  # no answer (the API node was down)
    other: list[str] = field(default_factory=list)  # anything else: a failure of the test
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return list(self.accepted.values())


def submit_one(cluster: Cluster, http: httpx.Client, body: dict[str, Any], seen: Submits) -> str:
    """Submit ``body`` under a new idempotency key, retrying with that key until answered: a
    retry after a lost answer returns the same run, so nothing is submitted twice or lost."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, f"no answer to a submit for 120 s ({seen.other[-3:]})"
        try:
            answer = http.post(
                f"{cluster.url}/api/v1/runs",
                json=body,
                headers={"Authorization": f"Bearer {cluster.token}", "Idempotency-Key": key},
            )
        except httpx.TransportError:
            with seen.lock:
                seen.transport_errors += 1
            time.sleep(0.1)  # the API node is away: retry (bounded by the deadline)
            continue
        if answer.status_code in (200, 202):
            run_id = str(answer.json()["id"])
            with seen.lock:
                seen.accepted[key] = run_id
            return run_id
        if answer.status_code == 503:
            code = answer.json().get("error", {}).get("code")
            retry_after = answer.headers.get("Retry-After", "")
            with seen.lock:
                seen.unavailable += 1
                if code != "store_unavailable" or not retry_after.isdigit():
                    seen.bad_unavailable.append(f"{code} Retry-After={retry_after!r}")
            time.sleep(min(float(retry_after or 1), 1.0))  # as Retry-After says, at most 1 s
            continue
        with seen.lock:
            seen.other.append(f"{answer.status_code} {answer.text[:200]}")
        raise AssertionError(f"submit answered {answer.status_code}: {answer.text[:300]}")


class Load:
    """``threads`` submitters, each submitting ``body()`` at most ``rate`` per second, until
    stopped."""

    def __init__(
        self,
        cluster: Cluster,
        body: Callable[[], dict[str, Any]],
        rate: float,
        threads: int = 2,
    ) -> None:
        self.cluster, self.body, self.period = cluster, body, threads / rate
        self.seen = Submits()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        try:
            with httpx.Client(timeout=30) as http:
                while not self.stop.is_set():
                    started = time.monotonic()
                    submit_one(self.cluster, http, self.body(), self.seen)
                    self.stop.wait(max(self.period - (time.monotonic() - started), 0))
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(150)
        assert not self.errors, self.errors

    def wait_accepted(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.seen.accepted) < count:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"{len(self.seen.accepted)}/{count} accepted"
            time.sleep(0.02)  # a count to reach in other threads: no event to await


def settle(cluster: Cluster, phase: str, timeout_s: float) -> None:
    """Wait until no run of ``phase`` is pending or running (bounded)."""
    deadline = time.monotonic() + timeout_s
    with cluster.client() as http:
        while True:
            try:
                left = http.get(
                    "/api/v1/runs",
                    params=[
                        ("label", f"chaos={phase}"),
                        ("status", "pending"),
                        ("status", "running"),
                        ("limit", "1"),
                    ],
                ).json()["runs"]
            except (httpx.TransportError, KeyError):
                left = [None]  # the API is away a moment: ask again
            if not left:
                return
            if time.monotonic() > deadline:
                return  # the audit reports what is stuck
            time.sleep(0.2)  # runs in other processes: polled, bounded


@dataclass
class Audit:
    phase: str
    runs: int = 0
    completed: int = 0
    failed_by_policy: int = 0  # failed, and the policy says so (attempts used up / not retried)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # terminal, but not as the policy says
    duplicates: int = 0  # extra attempts (a run executed more than once)
    unexplained: list[str] = field(default_factory=list)  # an extra attempt not a lease expiry
    kinds: Counter[str] = field(default_factory=Counter)  # failure kinds of non-final attempts
    runs_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts_data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.wrong or self.unexplained)

    def problems(self) -> str:
        return (
            f"{self.phase}: lost {self.lost[:5]}, stuck {self.stuck[:5]}, "
            f"wrong {self.wrong[:5]}, unexplained duplicates {self.unexplained[:5]}"
        )


def audit(cluster: Cluster, phase: str, ids: list[str], *, explained: set[str]) -> Audit:
    """Check every accepted run of ``phase``: present (not lost), terminal (not stuck), ended as
    its retry policy says, and every extra attempt explained by a failure kind in ``explained``
    (a lease expiry, ``worker_lost``)."""
    result = Audit(phase, runs=len(ids))
    with cluster.client() as http:
        for run_id in ids:
            got = http.get(f"/api/v1/runs/{run_id}")
            if got.status_code == 404:
                result.lost.append(run_id)
                continue
            run = got.json()
            result.runs_data[run_id] = run
            if run["status"] not in TERMINAL:
                result.stuck.append(run_id)
                continue
            attempts = http.get(f"/api/v1/runs/{run_id}/attempts").json()["attempts"]
            result.attempts_data[run_id] = attempts
            _judge(result, run, attempts, explained)
    return result


def _judge(
    result: Audit, run: dict[str, Any], attempts: list[dict[str, Any]], explained: set[str]
) -> None:
    run_id = run["id"]
    policy = run["retry"]
    kinds = [(a.get("failure") or {}).get("kind") for a in attempts]
    if len(attempts) != run["attempts"]:
        result.wrong.append(f"{run_id}: {run['attempts']} attempts, {len(attempts)} rows")
        return
    for kind in kinds[:-1]:
        result.kinds[str(kind)] += 1
        if kind not in explained:
            result.unexplained.append(f"{run_id}: an attempt ended {kind}")
    result.duplicates += max(len(attempts) - 1, 0)
    if any(kind not in policy["retry_on"] for kind in kinds[:-1]):
        result.wrong.append(f"{run_id}: retried after {kinds[:-1]} ({policy['retry_on']})")
    if run["status"] == "completed":
        if attempts[-1]["status"] != "completed" or len(attempts) > policy["max_attempts"]:
            result.wrong.append(f"{run_id}: completed, attempts {kinds}")
        result.completed += 1
    elif run["status"] == "failed":
        last = kinds[-1]
        if len(attempts) == policy["max_attempts"] or last not in policy["retry_on"]:
            result.failed_by_policy += 1
        else:
            result.wrong.append(f"{run_id}: failed ({last}) after {len(attempts)} attempts")
    else:
        result.wrong.append(f"{run_id}: {run['status']}")


def throughput(runs: list[dict[str, Any]]) -> float:
    """Runs finished per second, from the first start to the last finish (server times)."""
    starts = [datetime.fromisoformat(r["started_at"]) for r in runs if r.get("started_at")]
    ends = [datetime.fromisoformat(r["finished_at"]) for r in runs if r.get("finished_at")]
    span = (max(ends) - min(starts)).total_seconds()
    return len(ends) / span if span > 0 else float("inf")
