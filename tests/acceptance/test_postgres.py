"""Scale-out on PostgreSQL, end to end: ``mcpexec db migrate``, an API process without workers
(``serve --no-workers``) and a separate ``mcpexec worker`` sharing one database; and a database
outage (new connections refused, every mcpexec connection terminated) under load."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from mcpexec.client import ApiError, Client
from mcpexec.store._migrations import load_migrations
from pg_server import admin_url, fresh_schema

from .conftest import MCPEXEC, Server, free_port, make_server

LATEST = load_migrations("postgres")[-1].number

pytestmark = pytest.mark.slow
RUNS = 200


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _mcpexec(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPEXEC, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _env(home: Path, url: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "MCPEXEC_HOME": str(home), "MCPEXEC_DATABASE_URL": url}


def test_db_migrate_is_idempotent_and_refuses_a_newer_database(db_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, db_url)
    for _ in range(2):
        done = _mcpexec("db", "migrate", env=env)
        assert done.returncode == 0, done.stderr
        assert f"schema at version {LATEST} (up to date)" in done.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    refused = _mcpexec("db", "migrate", env=env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
    assert "newer than this mcpexec" in refused.stderr
    unreachable = _env(tmp_path, "postgresql://postgres@127.0.0.1:1/x")
    for command in (["db", "migrate"], ["worker"], ["serve", "--port", str(free_port())]):
        gone = _mcpexec(*command, env=unreachable)
        assert gone.returncode == 1, (command, gone.stderr)
        assert gone.stderr.strip().count("\n") == 0, gone.stderr  # one line, no traceback
        assert "cannot connect to PostgreSQL" in gone.stderr
        assert "MCPEXEC_DATABASE_URL" in gone.stderr
    bad = _mcpexec("db", "migrate", env=_env(tmp_path, "postgresql://db.internal"))
    assert bad.returncode == 1
    assert "name the database" in bad.stderr


class Worker:
    """A ``mcpexec worker`` process on the shared database."""

    def __init__(
        self, server: Server, slots: int, home: Path | None = None, labels: str | None = None
    ) -> None:
        """On ``server``'s home, or on ``home`` (another machine: nothing shared but the DB),
        with ``labels`` (``--labels``)."""
        env = server.env()
        if home is not None:
            home.mkdir(exist_ok=True)
            env = {**env, "HOME": str(home), "MCPEXEC_HOME": str(home)}
        self.log_path = (home or server.home) / f"worker-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [MCPEXEC, "worker", "--workers", str(slots)]
                + ([] if labels is None else ["--labels", labels]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _start_cluster(db_url: str, tmp_path: Path, worker_home: Path | None) -> tuple[Server, Worker]:
    server = make_server(tmp_path, workers=0, MCPEXEC_DATABASE_URL=db_url, MCPEXEC_SANDBOX="none")
    server.args = ["--no-workers"]
    server.start()
    worker = Worker(server, slots=4, home=worker_home)
    try:
        with server.client() as client:
            deadline = time.monotonic() + 60
            while not client.workers():  # registered: its store is open and it claims
                assert worker.proc.poll() is None, worker.log()
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)  # another process's start-up: nothing to await but its row
    except BaseException:
        worker.stop()
        server.stop()
        raise
    return server, worker


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[tuple[Server, Worker]]:
    server, worker = _start_cluster(db_url, tmp_path, None)
    try:
        yield server, worker
    finally:
        worker.stop()
        server.stop()


@pytest.fixture
def two_machines(db_url: str, tmp_path: Path) -> Iterator[tuple[Server, Worker]]:
    """The API and the worker on different homes (as on two machines): only the DB is shared."""
    server, worker = _start_cluster(db_url, tmp_path, tmp_path / "worker-home")
    try:
        yield server, worker
    finally:
        worker.stop()
        server.stop()


def _wait_all(client: Client, ids: list[str], timeout_s: float) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, object]] = {}
    for run_id in ids:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(done)}/{len(ids)} runs finished in time"
            try:
                run = client.wait(run_id, timeout_s=min(remaining, 30))
            except (ApiError, httpx.TransportError):  # the API's store may be away a moment
                time.sleep(0.1)  # no event to await across an outage: bounded retry
                continue
            if run["status"] in ("completed", "failed", "cancelled"):
                done[run_id] = run
                break
    return done


def test_an_api_without_workers_and_a_worker_process_run_200_runs(
    cluster: tuple[Server, Worker],
) -> None:
    server, worker = cluster
    with server.client() as client:
        assert client.health()["worker_slots"] == 0  # the API process runs nothing
        ids = [client.submit({"command": ["true"]})["id"] for _ in range(RUNS)]
        done = _wait_all(client, ids, timeout_s=120)
        assert len(done) == RUNS
        assert {r["status"] for r in done.values()} == {"completed"}, worker.log()
        assert all(r["attempts"] == 1 for r in done.values())
        pids = {w["pid"] for w in client.workers()}
    assert pids == {worker.proc.pid}


def test_an_artifact_written_on_a_worker_machine_downloads_from_the_api(
    two_machines: tuple[Server, Worker], tmp_path: Path
) -> None:
    """Artifact bytes live in PostgreSQL (blob_store auto): the API serves what a worker with
    another MCPEXEC_HOME stored, with no directory shared between them."""
    server, worker = two_machines
    shell = (
        'head -c 2621447 /dev/urandom > "$MCPEXEC_OUTPUT_DIR/big.bin"; '
        'mkdir "$MCPEXEC_OUTPUT_DIR/sub"; printf hello > "$MCPEXEC_OUTPUT_DIR/sub/a.txt"'
    )
    with server.client() as client:
        run_id = client.submit({"shell": shell})["id"]
        run = client.wait(run_id, timeout_s=60)
        assert run["status"] == "completed", worker.log()
        listed = {a["name"]: a for a in client.artifacts(run_id)}
        assert set(listed) == {"big.bin", "sub/a.txt"}
        assert listed["big.bin"]["size"] == 2621447
        for name, artifact in listed.items():
            out = tmp_path / name.replace("/", "_")
            with out.open("wb") as f:
                assert client.download(run_id, name, f) == artifact["size"]
            data = out.read_bytes()
            assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
        assert (tmp_path / "sub_a.txt").read_bytes() == b"hello"
        headers = httpx.get(
            f"{server.url}/api/v1/runs/{run_id}/artifacts/sub/a.txt",
            headers={"Authorization": f"Bearer {server.token}"},
        ).headers
        assert headers["content-length"] == "5"
        assert headers["content-disposition"] == 'attachment; filename="a.txt"'
    for home in (server.home, tmp_path / "worker-home"):  # the bytes are in no directory
        assert not any(p.is_file() for p in (home / "artifacts").rglob("*")), home


def _set_connections(db_url: str, allowed: bool) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).upper()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'mcpexec'",
                [name],
            )


@pytest.mark.timeout(300)
def test_a_database_outage_under_load_loses_nothing(
    cluster: tuple[Server, Worker], db_url: str
) -> None:
    server, worker = cluster
    accepted: list[str] = []
    refused: list[ApiError] = []
    stop = threading.Event()

    def submit_forever() -> None:
        with server.client() as client:
            while not stop.is_set():
                try:
                    accepted.append(client.submit({"command": ["true"]})["id"])
                except ApiError as exc:
                    refused.append(exc)

    submitters = [threading.Thread(target=submit_forever) for _ in range(3)]
    for thread in submitters:
        thread.start()
    try:
        while len(accepted) < 50:
            time.sleep(0.01)  # let the load build up: a count to reach, no event
        _set_connections(db_url, allowed=False)
        answer = httpx.post(
            f"{server.url}/api/v1/runs",
            json={"command": ["true"]},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=60,
        )
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
    finally:
        _set_connections(db_url, allowed=True)
    after = len(accepted)
    while len(accepted) < after + 50:  # and the API recovers by itself
        time.sleep(0.01)
    stop.set()
    for thread in submitters:
        thread.join(60)

    assert refused
    for exc in refused:
        assert exc.status == 503, exc
        assert exc.api_code == "store_unavailable", exc
        assert exc.details.get("retry_after_s", 0) >= 1
    with server.client() as client:
        done = _wait_all(client, accepted, timeout_s=180)
    assert len(done) == len(accepted)  # every 202 ends terminal: none lost, none stuck
    statuses = {run_id: run["status"] for run_id, run in done.items()}
    completed = sum(1 for s in statuses.values() if s == "completed")
    print(
        f"outage: {len(accepted)} accepted, {len(refused)} refused with 503, "
        f"{completed} completed, {len(accepted) - completed} failed after a store error"
    )
    assert completed == len(accepted), worker.log()


def test_a_separate_workers_events_reach_the_api_process_stream(
    cluster: tuple[Server, Worker],
) -> None:
    # The API process runs nothing: every start and finish is the worker process's write, seen
    # by the API's event stream through the shared database (its bounded poll).
    server, _ = cluster
    with server.client() as client:
        worker_ids = {w["id"] for w in client.workers()}
        runs = [client.submit({"command": ["true"], "timeout_s": 30})["id"] for _ in range(10)]
        finished = list(client.stream_events(0, type="run.finished", limit=10, timeout=60))
        assert {e["subject"] for e in finished} == set(runs)
        started = client.events_page(after=0, limit=1000, type="run.started")["events"]
        assert {e["data"]["worker_id"] for e in started} <= worker_ids
        assert len(started) == 10
        everything = [e["id"] for e in client.events_page(after=0, limit=1000)["events"]]
        assert everything == sorted(set(everything))


def test_runs_asking_for_worker_labels_go_to_the_workers_having_them(
    cluster: tuple[Server, Worker],
) -> None:
    server, _ = cluster
    gpu = Worker(server, slots=2, labels="gpu,cuda")
    try:
        with server.client() as client:
            deadline = time.monotonic() + 60
            while len(client.workers()) < 2:  # the labelled worker registered
                assert gpu.proc.poll() is None, gpu.log()
                assert time.monotonic() < deadline, gpu.log()
                time.sleep(0.05)  # another process's start-up: nothing to await but its row
            by_pid = {w["pid"]: w["id"] for w in client.workers()}
            shown = {w["pid"]: w["labels"] for w in client.workers()}
            assert shown[gpu.proc.pid] == ["cuda", "gpu"]  # GET /api/v1/workers shows them
            routed = [
                client.submit({"command": ["true"], "worker_labels": ["gpu"]})["id"]
                for _ in range(20)
            ]
            by_cli = server.cli("submit", "--worker-label", "gpu", "--", "true")
            assert by_cli.returncode == 0, by_cli.stderr
            routed.append(by_cli.stdout.strip())
            anywhere = [client.submit({"command": ["true"]})["id"] for _ in range(20)]
            done = _wait_all(client, routed + anywhere, timeout_s=120)
            assert {r["status"] for r in done.values()} == {"completed"}
            assert all(done[i]["worker_labels"] == ["gpu"] for i in routed)
            assert {done[i]["worker_id"] for i in routed} == {by_pid[gpu.proc.pid]}
            assert all(done[i]["worker_labels"] == [] for i in anywhere)
            again = client.wait(client.rerun(routed[0])["id"], timeout_s=60)
            assert (again["worker_labels"], again["worker_id"]) == (["gpu"], by_pid[gpu.proc.pid])
            # nobody has "tpu": the run waits (and the workers do not spin on it)
            waiting = client.submit({"command": ["true"], "worker_labels": ["tpu"]})["id"]
            assert client.get(waiting)["status"] == "pending"
            with pytest.raises(ApiError) as bad:
                client.submit({"command": ["true"], "worker_labels": ["GPU!"]})
            assert bad.value.status == 422
            assert "worker label 'GPU!'" in str(bad.value)
    finally:
        gpu.stop()
