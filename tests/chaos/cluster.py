"""A small multi-machine mcpexec cluster on one host, for the chaos tests.

Each "machine" is a network namespace joined to the root namespace by a veth pair (its own
/24: the root side ``.1``, the namespace side ``.2``). A throwaway PostgreSQL 15 cluster
(``initdb`` into a temporary directory, run as the ``postgres`` user) listens on the root side
of every pair, so each machine reaches the database over its own link, and cutting that link
(``ip link set … down``) cuts that machine off. The API (``mcpexec serve --no-workers``) runs in
one namespace and the workers (``mcpexec worker``) in two others; the test process reaches the
API over the API's link. No other database, cluster or interface is touched, and everything is
removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from servers import missing

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
LEASE_S = 4.0
API_PORT = 8002
#: The settings of every mcpexec process: short leases so that a lost worker is noticed within
#: seconds, frequent heartbeats and reaper passes.
PROCESS_ENV = {
    "MCPEXEC_SANDBOX": "none",
    "MCPEXEC_LEASE_S": str(LEASE_S),
    "MCPEXEC_HEARTBEAT_S": "0.5",
    "MCPEXEC_REAPER_S": "0.5",
    "MCPEXEC_POLL_S": "0.2",
    "MCPEXEC_KILL_GRACE_S": "0.5",
    "MCPEXEC_SHUTDOWN_GRACE_S": "5",
    "MCPEXEC_RUN_PATH": "/usr/bin:/bin",
    "MCPEXEC_LOG_LEVEL": "info",
}


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def require_namespaces() -> None:
    """Skip (locally) or fail (under CI=true) unless this host can make network namespaces and
    run a PostgreSQL 15 cluster of its own."""
    if os.geteuid() != 0:
        missing("network namespaces (ip netns)", "the tests do not run as root")
    if shutil.which("ip") is None:
        missing("network namespaces (ip netns)", "iproute2 (ip) is not installed")
    if not (PG_BIN / "initdb").is_file():
        missing("PostgreSQL 15 server binaries", f"{PG_BIN}/initdb does not exist")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing("PostgreSQL 15 server binaries", "there is no 'postgres' user to run initdb as")
    probe = f"mxp{secrets.token_hex(4)}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        missing("network namespaces (ip netns)", f"ip netns add failed: {made.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)


@dataclass
class Host:
    """One machine: a network namespace and its veth link to the root namespace."""

    name: str
    subnet: str  # "10.A.B"

    @property
    def host_if(self) -> str:
        return f"{self.name}h"

    @property
    def ns_if(self) -> str:
        return f"{self.name}n"

    @property
    def host_ip(self) -> str:  # the root side: where this machine reaches PostgreSQL
        return f"{self.subnet}.1"

    @property
    def ip(self) -> str:  # the machine's own address
        return f"{self.subnet}.2"

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", "-n", self.name, "addr", "add", f"{self.ip}/24", "dev", self.ns_if)
        _run("ip", "-n", self.name, "link", "set", self.ns_if, "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")

    def cut(self) -> None:
        """Take the link down: nothing reaches the machine, nothing leaves it."""
        _run("ip", "link", "set", self.host_if, "down")

    def restore(self) -> None:
        _run("ip", "link", "set", self.host_if, "up")

    def pids(self) -> list[int]:
        out = _run("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def commands(self) -> list[str]:
        """The command lines of every process in the namespace (a run's processes included)."""
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                found.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
        return found

    def delete(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster listening on the root side of every machine's link."""

    listen: list[str]
    port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcpexec-chaos-pg-")))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        _run("runuser", "-u", "postgres", "--", *args, timeout=timeout)

    def init(self) -> None:
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.0.0.0/8 trust\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{','.join(self.listen)}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\n"
                "fsync = off\n"  # a throwaway cluster; fast shutdowns still flush
                # What docs/deploy.md recommends: a client that vanished mid-transaction (a
                # cut network) must not hold its row locks until TCP gives up.
                "idle_in_transaction_session_timeout = '5s'\n"
                "tcp_keepalives_idle = 2\n"
                "tcp_keepalives_interval = 1\n"
                "tcp_keepalives_count = 3\n"
            )

    def start(self) -> None:
        # -l (in start_server): the server's output goes to a file, not to our pipe (which it
        # would hold open)
        self.start_server()
        self.sql("CREATE DATABASE mcpexec")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed, the server comes back."""
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-m", "fast", "-w", "-t", "60", "restart",
        )  # fmt: skip

    def stop_server(self) -> None:
        """``pg_ctl stop -m fast`` (the data stays; ``start_server`` brings it back)."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if self.data.is_dir():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._as_postgres(
                    str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                    "stop", timeout=60,
                )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, host: Host, db: str = "mcpexec") -> str:
        return f"postgresql://postgres@{host.host_ip}:{self.port}/{db}"

    def sql(self, query: str, db: str = "postgres") -> list[tuple[object, ...]]:
        url = f"postgresql://postgres@{self.listen[0]}:{self.port}/{db}"
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def terminate_mcpexec(self) -> int:
        """``pg_terminate_backend`` of every mcpexec connection (API and workers)."""
        rows = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'mcpexec'"
        )
        return int(str(rows[0][0]))


@dataclass
class Proc:
    """An mcpexec process (``serve`` or ``worker``) inside a machine's namespace."""

    host: Host
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            # `ip netns exec` enters the namespace and execs: the pid is mcpexec's own.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.host.name, MCPEXEC, *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    pg: Postgres
    api_host: Host
    worker_hosts: list[Host]
    api: Proc
    workers: list[Proc]
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.api_host.ip}:{API_PORT}"

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def start_api(self, timeout_s: float = 60) -> None:
        self.api.start()
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.api.alive(), self.api.log()
            assert time.monotonic() < deadline, f"the API did not answer:\n{self.api.log()}"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # another process's start-up: no event to await but its port
        self.token = (Path(self.api.env["MCPEXEC_HOME"]) / "token").read_text().strip()

    def worker_ids(self) -> dict[int, str]:
        """Registered workers, by pid (a worker id is ``host:pid:random``)."""
        with self.client() as http:
            listed = http.get("/api/v1/workers").json()["workers"]
        return {int(w["pid"]): w["id"] for w in listed}

    def start_worker(self, index: int, timeout_s: float = 60) -> None:
        worker = self.workers[index]
        worker.start()
        deadline = time.monotonic() + timeout_s
        while worker.pid not in self.worker_ids():  # registered: its store is open, it claims
            assert worker.alive(), worker.log()
            assert time.monotonic() < deadline, f"worker {index} did not register:\n{worker.log()}"
            time.sleep(0.05)  # another process's start-up: nothing to await but its row

    def close(self) -> None:
        for proc in [self.api, *self.workers]:
            if proc.alive():
                assert proc.proc is not None
                proc.proc.kill()
                proc.proc.wait(10)
        for host in [self.api_host, *self.worker_hosts]:
            host.delete()
        self.pg.stop()


def _free_subnet_prefix() -> str:
    """A 10.X.Y prefix base whose /24s (Y, Y+1, Y+2) no interface here uses."""
    used = _run("ip", "-o", "addr", "show", check=False).stdout
    for _ in range(50):
        a, b = 100 + secrets.randbelow(150), 3 * secrets.randbelow(80)
        if all(f" 10.{a}.{b + i}." not in used for i in range(3)):
            return f"10.{a}.{b}"
    raise RuntimeError("no free 10.x.y.0/24 subnets for the chaos cluster")


@contextlib.contextmanager
def cluster(tmp_path: Path, workers: int = 4) -> Iterator[Cluster]:
    """PostgreSQL, an API machine and two worker machines (``workers`` slots each)."""
    tag = secrets.token_hex(3)
    base = _free_subnet_prefix()
    a, b, c = base.split(".")
    api_host = Host(f"mxa{tag}", f"{a}.{b}.{int(c)}")
    worker_hosts = [Host(f"mxw{i}{tag}", f"{a}.{b}.{int(c) + i}") for i in (1, 2)]
    hosts = [api_host, *worker_hosts]
    port = 20000 + secrets.randbelow(20000)
    pg = Postgres([h.host_ip for h in hosts], port)
    api_home = tmp_path / "api"
    api_home.mkdir()

    def env(home: Path, host: Host) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "MCPEXEC_HOME": str(home),
            "MCPEXEC_DATABASE_URL": pg.url(host),
            **PROCESS_ENV,
        }

    api = Proc(
        api_host,
        ["serve", "--no-workers", "--host", api_host.ip, "--port", str(API_PORT)],
        env(api_home, api_host),
        api_home / "serve.log",
    )
    procs = []
    for i, host in enumerate(worker_hosts):
        home = tmp_path / f"worker{i}"
        home.mkdir()
        procs.append(
            Proc(host, ["worker", "--workers", str(workers)], env(home, host), home / "worker.log")
        )
    made = Cluster(pg, api_host, worker_hosts, api, procs)
    try:
        for host in hosts:
            host.create()
        pg.init()
        pg.start()
        made.start_api()
        for i in range(len(procs)):
            made.start_worker(i)
        yield made
    finally:
        made.close()
