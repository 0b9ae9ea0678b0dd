"""Chaos: PostgreSQL, an API node and two worker machines in network namespaces (cluster.py),
short runs flowing through them while faults are injected:

- ``kill -9`` of a worker mid-run, repeatedly (and restarting it);
- ``kill -9`` of the API node under load (the submitters retry with their idempotency keys);
- a graceful SIGTERM rolling restart of every worker;
- a PostgreSQL restart under load, and ``pg_terminate_backend`` of every mcpexec connection:
  submits in the outage answer 503 ``store_unavailable`` with ``Retry-After``, every process
  reconnects by itself, and the throughput after recovery is measured against the baseline;
- a worker machine cut off (``ip link set … down``) for longer than the lease: its runs are
  retried on the other machine, its late reports are fenced out, and when it is back it kills
  what it was still running.

After each fault: every run that answered 202 is there (none lost), terminal (none stuck), ended
as its retry policy says, and each extra attempt is explained by a lease expiry
(``worker_lost``). The figures are printed at the end (docs/benchmarks.md keeps a copy).

Bounded for CI (a few minutes); ``CHAOS_SOAK=1`` runs the long soak (thousands of runs,
50 worker kills, repeated restarts). Needs root, ``ip netns`` and the PostgreSQL 15 server
binaries: skips without them, fails under ``CI=true``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .cluster import LEASE_S, Cluster, cluster, require_namespaces
from .load import LEASE_EXPIRY, Audit, Load, Submits, audit, settle, submit_one, throughput

SOAK = os.environ.get("CHAOS_SOAK", "") == "1"
#: (CI, soak) sizes.
BASELINE_RUNS = 1000 if SOAK else 200
WORKER_KILLS = 50 if SOAK else 8
PG_RESTARTS = 3 if SOAK else 1
TERMINATIONS = 5 if SOAK else 2
OUTAGE_S = 8.0
LOAD_RATE = 25.0  # submits per second during faults

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800 if SOAK else 480)]

#: Runs that survive anything the test does to them: a worker lost is retried quickly.
KILLABLE_RETRY = {
    "max_attempts": 10,
    "backoff": "fixed",
    "delay_s": 0.1,
    "jitter": False,
    "retry_on": ["worker_lost", "store_error"],
}


def body(phase: str, command: list[str], **more: Any) -> dict[str, Any]:
    return {"command": command, "labels": {"chaos": phase}, "timeout_s": 120, **more}


class Figures:
    def __init__(self) -> None:
        self.faults: dict[str, int] = {}
        self.audits: list[Audit] = []
        self.unavailable = 0
        self.transport_errors = 0
        self.recovery: dict[str, tuple[float, float]] = {}
        self.baseline = 0.0
        self.notes: list[str] = []

    def fault(self, name: str, count: int = 1) -> None:
        self.faults[name] = self.faults.get(name, 0) + count

    def add(self, result: Audit, load: Load | None = None) -> None:
        assert result.ok(), result.problems()
        self.audits.append(result)
        if load is not None:
            self.unavailable += load.seen.unavailable
            self.transport_errors += load.seen.transport_errors
            assert not load.seen.bad_unavailable, load.seen.bad_unavailable[:5]
            assert not load.seen.other, load.seen.other[:5]

    def table(self) -> str:
        lines = [
            f"chaos ({'soak' if SOAK else 'CI'}): lease {LEASE_S:g} s, 2 worker machines x 4 slots",
            "phase                runs  completed  failed*  lost  stuck  duplicates "
            "(lease expiries)",
        ]
        for a in self.audits:
            lines.append(
                f"{a.phase:<20} {a.runs:>4} {a.completed:>10} {a.failed_by_policy:>8} "
                f"{len(a.lost):>5} {len(a.stuck):>6} {a.duplicates:>11} ({a.kinds[LEASE_EXPIRY]})"
            )
        total = sum(a.runs for a in self.audits)
        dups = sum(a.duplicates for a in self.audits)
        lines.append(
            f"total: {total} runs, lost {sum(len(a.lost) for a in self.audits)}, stuck "
            f"{sum(len(a.stuck) for a in self.audits)}, duplicates {dups} (each a lease expiry)"
        )
        lines.append("faults: " + ", ".join(f"{k} x{v}" for k, v in self.faults.items()))
        lines.append(
            f"submits answered 503 store_unavailable (with Retry-After): {self.unavailable}; "
            f"submits that got no answer (API down) and were retried: {self.transport_errors}"
        )
        for name, (before, after) in self.recovery.items():
            lines.append(
                f"throughput (median of 3 x {BASELINE_RUNS} runs of `true`) just before {name}: "
                f"{before:.0f} runs/s, just after: {after:.0f} runs/s = "
                f"{100 * after / before:.0f} % (recovery)"
            )
        lines.extend(self.notes)
        lines.append("* failed as the run's retry policy says (attempts used up)")
        return "\n".join(lines)


def batch(c: Cluster, phase: str, count: int, figures: Figures) -> float:
    """``count`` runs of ``true`` submitted at once; their throughput (runs/s)."""
    seen = Submits()
    with httpx.Client(timeout=30) as http:
        ids = [submit_one(c, http, body(phase, ["true"]), seen) for _ in range(count)]
    settle(c, phase, timeout_s=120)
    result = audit(c, phase, ids, explained={LEASE_EXPIRY})
    figures.add(result)
    assert result.completed == count, result.problems()
    return throughput(list(result.runs_data.values()))


def median_batch(c: Cluster, phase: str, figures: Figures, times: int = 3) -> float:
    """The median throughput of ``times`` batches (this shared machine's noise is large)."""
    rates = sorted(batch(c, f"{phase}-{i}", BASELINE_RUNS, figures) for i in range(times))
    return rates[times // 2]


def holder(c: Cluster, index: int, phase: str, timeout_s: float = 30) -> None:
    """Wait until worker ``index`` is running a run of ``phase`` (the kill lands mid-run)."""
    wanted = f":{c.workers[index].pid}:"
    deadline = time.monotonic() + timeout_s
    with c.client() as http:
        while True:
            running = http.get(
                "/api/v1/runs",
                params=[("label", f"chaos={phase}"), ("status", "running"), ("limit", "50")],
            ).json()["runs"]
            if any(wanted in (r.get("worker_id") or "") for r in running):
                return
            assert time.monotonic() < deadline, f"worker {index} runs nothing of {phase}"
            time.sleep(0.05)  # another process's claim: polled, bounded


def phase_worker_kills(c: Cluster, figures: Figures) -> None:
    phase = "worker-kill"
    make = lambda: body(phase, ["sleep", "0.3"], retry=KILLABLE_RETRY)  # noqa: E731
    with Load(c, make, rate=LOAD_RATE / 2) as load:
        load.wait_accepted(20)
        for i in range(WORKER_KILLS):
            victim = i % 2
            holder(c, victim, phase)
            c.workers[victim].kill9()
            figures.fault("kill -9 worker")
            c.start_worker(victim)
    settle(c, phase, timeout_s=120)
    result = audit(c, phase, load.seen.ids, explained={LEASE_EXPIRY})
    figures.add(result, load)
    assert result.duplicates >= 1  # the kills landed mid-run


def phase_api_kill(c: Cluster, figures: Figures) -> None:
    phase = "api-kill"
    with Load(c, lambda: body(phase, ["sleep", "0.1"]), rate=LOAD_RATE) as load:
        load.wait_accepted(30)
        c.api.kill9()
        figures.fault("kill -9 API node")
        time.sleep(1.0)  # the API stays down a moment: submitters see no answer meanwhile
        c.start_api()
        before = len(load.seen.accepted)
        load.wait_accepted(before + 30)
    settle(c, phase, timeout_s=120)
    result = audit(c, phase, load.seen.ids, explained={LEASE_EXPIRY})
    figures.add(result, load)
    assert load.seen.transport_errors >= 1
    assert len(set(load.seen.ids)) == len(load.seen.ids)  # a retried submit made no second run


def phase_rolling_restart(c: Cluster, figures: Figures) -> None:
    phase = "rolling-restart"
    with Load(c, lambda: body(phase, ["sleep", "0.5"]), rate=LOAD_RATE) as load:
        load.wait_accepted(20)
        for index in range(len(c.workers)):
            holder(c, index, phase)
            assert c.workers[index].terminate() == 0, c.workers[index].log()
            figures.fault("SIGTERM worker (rolling restart)")
            c.start_worker(index)
        before = len(load.seen.accepted)
        load.wait_accepted(before + 20)
    settle(c, phase, timeout_s=120)
    result = audit(c, phase, load.seen.ids, explained={LEASE_EXPIRY})
    figures.add(result, load)
    assert result.duplicates == 0  # a graceful stop lets its attempts finish
    assert result.completed == result.runs


def phase_postgres(c: Cluster, figures: Figures) -> None:
    phase = "postgres"
    figures.baseline = median_batch(c, "before-postgres", figures)
    with Load(c, lambda: body(phase, ["sleep", "0.1"]), rate=LOAD_RATE, threads=3) as load:
        load.wait_accepted(30)
        for _ in range(PG_RESTARTS):
            c.pg.restart()
            figures.fault("PostgreSQL restart")
            before = len(load.seen.accepted)
            load.wait_accepted(before + 30)
        # Down for longer than a request waits for a connection (5 s) and than the lease:
        # submits meanwhile answer 503, leases run out, everything resumes when it is back.
        c.pg.stop_server()
        figures.fault(f"PostgreSQL down for {OUTAGE_S:g} s")
        time.sleep(OUTAGE_S)  # the outage itself
        c.pg.start_server()
        refused = load.seen.unavailable
        before = len(load.seen.accepted)
        load.wait_accepted(before + 30)
        for _ in range(TERMINATIONS):
            killed = c.pg.terminate_mcpexec()
            figures.fault("pg_terminate_backend of every mcpexec connection")
            figures.fault("connections terminated", killed)
            before = len(load.seen.accepted)
            load.wait_accepted(before + 30)
    settle(c, phase, timeout_s=120)
    result = audit(c, phase, load.seen.ids, explained={LEASE_EXPIRY})
    figures.add(result, load)
    assert refused >= 1, "no submit was refused while PostgreSQL was down"
    assert result.completed == result.runs
    after = median_batch(c, "after-postgres", figures)
    figures.recovery["the PostgreSQL faults"] = (figures.baseline, after)


def phase_partition(c: Cluster, figures: Figures) -> None:
    """Worker 1 (machine 2) holds runs when its link goes down for longer than the lease."""
    phase = "partition"
    cut_off = c.worker_hosts[1]
    other = c.workers[0]
    # The first attempt of a "hold" run outlasts the cut; of a "late" run it ends during the
    # cut (its report is late). Retries (attempt 2, elsewhere) end at once.
    hold = ["sh", "-c", '[ "$MCPEXEC_ATTEMPT" -gt 1 ] || sleep 60']
    late = ["sh", "-c", '[ "$MCPEXEC_ATTEMPT" -gt 1 ] || sleep 2']
    seen = Submits()
    assert other.proc is not None
    other.proc.send_signal(signal.SIGSTOP)  # so that machine 2 takes these four runs
    try:
        with httpx.Client(timeout=30) as http:
            ids = [
                submit_one(c, http, body(phase, cmd, retry=KILLABLE_RETRY), seen)
                for cmd in (hold, late, hold, late)
            ]
        wanted = f":{c.workers[1].pid}:"
        deadline = time.monotonic() + 30
        with c.client() as api:
            while not all(wanted in (api.get(f"/api/v1/runs/{i}").json()["worker_id"] or "")
                          for i in ids):  # fmt: skip
                assert time.monotonic() < deadline, "machine 2 did not take the runs"
                time.sleep(0.05)  # another process's claim: polled, bounded
    finally:
        other.proc.send_signal(signal.SIGCONT)
    cut_s = 2 * LEASE_S + 2
    log_before = len(c.workers[1].log())
    cut_off.cut()
    figures.fault("worker machine cut off (link down)")
    try:
        started = time.monotonic()
        settle(c, phase, timeout_s=cut_s)  # retried on machine 1 while machine 2 is away
        retried_during_cut = time.monotonic() - started < cut_s
        time.sleep(max(cut_s - (time.monotonic() - started), 0))  # the cut lasts cut_s
    finally:
        cut_off.restore()
    assert retried_during_cut, "the cut-off machine's runs were not retried elsewhere in time"
    result = audit(c, phase, ids, explained={LEASE_EXPIRY})
    figures.add(result)
    assert result.completed == 4
    for run_id in ids:
        first, second = result.attempts_data[run_id]
        # machine 2's attempt is the reaper's worker_lost, whatever machine 2 reported later
        assert ":" + str(c.workers[1].pid) + ":" in first["worker_id"]
        assert (first["failure"] or {}).get("kind") == LEASE_EXPIRY, first
        assert second["status"] == "completed"
        assert ":" + str(other.pid) + ":" in second["worker_id"]
    # Back on the network, machine 2 learns its attempts were taken and kills what still runs.
    deadline = time.monotonic() + 60
    while any("sleep 60" in cmd for cmd in cut_off.commands()):
        assert time.monotonic() < deadline, f"still running: {cut_off.commands()}"
        time.sleep(0.1)  # the heartbeat after reconnecting: another process, polled
    log = c.workers[1].log()[log_before:]
    fenced = log.count("fenced out, result dropped") + log.count("giving up reporting")
    figures.notes.append(
        f"cut-off machine: {len(ids)} runs retried elsewhere during a {cut_s:g} s cut; "
        f"its 2 late results dropped ({fenced} fenced-out or abandoned report(s) in its log), "
        "its 2 still-running attempts killed when it came back"
    )
    assert "reclaimed from this worker" in log
    # and it works again
    after = batch(c, "after-partition", 40, figures)
    assert after > 0


PHASES = {
    "worker-kill": phase_worker_kills,
    "api-kill": phase_api_kill,
    "rolling-restart": phase_rolling_restart,
    "postgres": phase_postgres,
    "partition": phase_partition,
}
#: A comma-separated subset of PHASES to run (while working on one); default: all.
ONLY = {p for p in os.environ.get("CHAOS_ONLY", "").split(",") if p}


def test_chaos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_namespaces()
    figures = Figures()
    try:
        with cluster(tmp_path) as c:
            batch(c, "warm-up", 40, figures)  # pools, caches, the first runs' start-up
            for name, phase in PHASES.items():
                if not ONLY or name in ONLY:
                    phase(c, figures)
    finally:
        text = figures.table()
        (tmp_path / "chaos-summary.txt").write_text(text + "\n")
        with capsys.disabled():
            print("\n" + text)
