"""Engine benchmark: how close does mcpexec get to spawning processes by hand?

One run measures, in this order:

(a) the raw ceiling: asyncio spawning ``true`` (pipes read, process awaited), C concurrent; measured
    before serve starts and after it stopped, the mean is used. With ``MCPEXEC_SANDBOX=default``
    (or ``strict``) serve runs sandboxed and the ceiling spawns the same bubblewrap command line
    mcpexec builds for a run (``BwrapCeiling``), so bwrap's own cost is not the engine's;
(d1) serve's RSS after a warm-up of the first runs;
(c) latency at idle: sequential submit + long-poll, submit→start and submit→completed;
(b) end to end throughput: N runs of ``true`` submitted over HTTP by a few concurrent submitters
    to a live ``mcpexec serve --workers 4``, timed from the first submit until all completed
    (the submitters' client: ``--client bare``, the default, is ``timing.BareHttp``, ~0.1 ms of
    CPU per request; ``--client httpx`` ~0.9 ms, which on two cores competes with serve);
(e) serve's CPU per run over (b) (utime+stime of serve and of its helper processes, the spawn
    helper and the watchdog; the runs' own, their reaped children's, is reported apart);
(d2) serve's RSS after the total run count (default 5,000) is reached;
(f) submitting: N runs as single ``POST /api/v1/runs`` against N runs in batches of
    ``--batch-size`` (``POST /api/v1/runs:batch``), the same submitters in flight, each with
    serve's CPU per run; the runs are due in a day, so that the workers do not compete with
    the submits being measured;
(g) reading statuses: the statuses of those runs as single ``GET /api/v1/runs/{id}`` against
    bulk reads (``GET /api/v1/runs?ids=…&fields=status,exit_code``, ``--ids-per-read`` each).
    (f) and (g) report each as a ratio against its single-request baseline of the same run.

Usage::

    .venv/bin/python bench/bench_engine.py            # the full run (about a minute or two)
    .venv/bin/python bench/bench_engine.py --quick    # a smoke run (seconds)
    MCPEXEC_SANDBOX=default .venv/bin/python bench/bench_engine.py   # the sandboxed row
    .venv/bin/python bench/bench_engine.py --n 4000 --json out.json
    # the same phases for each variant of serve's settings (or checkout, PYTHONPATH=.../src),
    # one serve after the other, the ceiling measured before, between and after them; each
    # variant compared with the first:
    .venv/bin/python bench/bench_engine.py --variant off:MCPEXEC_SPAWN_HELPER=0 \
        --variant on:MCPEXEC_SPAWN_HELPER=1

Only loopback traffic. serve runs with a fresh temporary ``MCPEXEC_HOME`` and is killed at the end,
whatever happens; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import orjson
from timing import BareHttp

from mcpexec.executor import bwrap, seccomp
from mcpexec.executor.sandbox import SandboxExecutor
from mcpexec.executor.sandbox_hooks import SandboxConfig, SandboxRuntime

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TERMINAL = ("completed", "failed", "cancelled")
TRUE_RUN = {"command": ["true"]}

# Targets from the issue: (label, comparison, target, goal).
TARGET_RATIO, GOAL_RATIO = 0.6, 0.8
TARGET_START_P50_MS, GOAL_START_P50_MS = 3.0, 2.0
TARGET_CPU_MS = 3.0
TARGET_RSS_GROWTH_MB = 30.0


# --- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU: the process itself (all threads) and its reaped children."""

    own: float
    children: float

    @classmethod
    def of(cls, pid: int) -> CpuTimes:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        fields = raw[raw.rfind(b")") + 2 :].split()
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        return cls((utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK)

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own + other.own, self.children + other.children)

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own - other.own, self.children - other.children)


#: serve's long-lived helper processes, by the file their interpreter runs: their CPU is serve's
#: (the issue counts "all its threads and helper processes"); their reaped children's is the runs'.
HELPER_SCRIPTS = (b"spawn_helper.py", b"watchdog.py")


def helper_pids(serve_pid: int) -> list[int]:
    """serve's direct children that are its helpers (spawn helper, watchdog)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2 :].split()[1])
        if ppid == serve_pid and any(a.endswith(HELPER_SCRIPTS) for a in cmdline):
            found.append(int(name))
    return found


def serve_cpu(serve_pid: int, helpers: list[int]) -> CpuTimes:
    """serve's own CPU plus its helpers'; children: serve's and the helpers' reaped children."""
    total = CpuTimes.of(serve_pid)
    for pid in helpers:
        with contextlib.suppress(OSError):
            total = total + CpuTimes.of(pid)
    return total


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 samples is the 198th)."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- (a) the raw ceiling ----------------------------------------------------------------------


async def _spawn_true(sem: asyncio.Semaphore) -> None:
    async with sem:
        proc = await asyncio.create_subprocess_exec(
            "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"true exited {proc.returncode}")


class BwrapCeiling:
    """The sandboxed ceiling: a plain asyncio loop spawning ``true`` under the bubblewrap command
    line mcpexec builds for a run (``executor.bwrap.build`` with the runtime the sandbox
    executor probes at start: the same binds, seccomp filter, status-reporting pid 1 and, as
    root, the drop to the sandbox uid), so that bwrap's own cost is not counted against the
    engine. What it leaves out is the engine's: the per-run workdir (here one directory, bound
    as the sandbox's home for every spawn), the cgroup leaf and the tmpfs workdir mount."""

    def __init__(self, strict: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mcpexec-bench-bwrap-"))
        root = os.geteuid() == 0
        work = Path("/tmp/mcpexec-sandbox") if root else self.tmp / "work"
        self.executor = SandboxExecutor(
            work, SandboxConfig(strict=strict), run_path="/usr/bin:/bin"
        )
        self.home = self.tmp / "home"

    @property
    def runtime(self) -> SandboxRuntime:
        assert self.executor.runtime is not None, "not started"
        return self.executor.runtime

    async def __aenter__(self) -> BwrapCeiling:
        await self.executor.start()
        rt = self.runtime
        self.home.mkdir(mode=0o700)
        if rt.root:
            os.chmod(self.tmp, 0o711)
            os.chown(self.home, rt.uid, rt.gid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.executor.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def describe(self) -> str:
        return f"bwrap({self.runtime.mode}) `true`"

    async def spawn(self, sem: asyncio.Semaphore) -> None:
        rt = self.runtime
        async with sem:
            # The status pid 1 reports on a pipe: the child inherits its write end. Both ends
            # are closed here, the write end as soon as the child has it.
            status, open_fds = None, []
            if rt.status_init is not None:
                open_fds = list(os.pipe())
                status = (rt.status_init, open_fds[1])
            try:
                spawned = bwrap.build(
                    rt.bwrap,
                    ["true"],
                    workdir=str(self.home),
                    env={"PATH": "/usr/bin:/bin", "HOME": bwrap.SANDBOX_HOME},
                    uid=rt.uid,
                    gid=rt.gid,
                    network=False,
                    tmp_bytes=rt.config.tmp_mb * 1024 * 1024,
                    seccomp_fd=None
                    if rt.probe.seccomp_error
                    else seccomp.filter_fd(rt.config.strict),
                    extra_ro=rt.config.ro_binds,
                    status=status,
                )
                drop = {"user": rt.uid, "group": rt.gid, "extra_groups": []} if rt.root else {}
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *spawned.argv,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        pass_fds=(*spawned.pass_fds, *([] if status is None else [status[1]])),
                        **drop,  # type: ignore[arg-type]
                    )
                finally:
                    spawned.close()
                    if status is not None:
                        os.close(open_fds.pop())
                _, err = await proc.communicate()
            finally:
                for fd in open_fds:
                    os.close(fd)
            if proc.returncode != 0:
                raise RuntimeError(f"bwrap true exited {proc.returncode}: {err.decode()[-300:]}")


async def raw_ceiling(
    n: int, concurrency: int, timeout_s: float, bwrap_ceiling: BwrapCeiling | None = None
) -> float:
    """Runs per second of asyncio spawning ``true`` (bare, or under bwrap) with
    ``concurrency`` in flight."""
    spawn = _spawn_true if bwrap_ceiling is None else bwrap_ceiling.spawn
    sem = asyncio.Semaphore(concurrency)
    await asyncio.wait_for(spawn(sem), timeout_s)  # warm-up: import and path lookup
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(spawn(sem) for _ in range(n))), timeout_s)
    return n / (time.perf_counter() - started)


# --- the server ---------------------------------------------------------------------------------


SANDBOX = os.environ.get("MCPEXEC_SANDBOX", "none")


class Serve:
    """A live ``mcpexec serve`` on a loopback port with its own temporary home."""

    def __init__(
        self, workers: int, keep_home: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        self.workers = workers
        self.settings = dict(settings or {})  # MCPEXEC_* (and PYTHONPATH) of this variant
        self.keep_home = keep_home
        self.home = Path(tempfile.mkdtemp(prefix="mcpexec-bench-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    def start(self, timeout_s: float = 30.0) -> None:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "MCPEXEC_HOME": str(self.home),
            # The engine against a bare spawn: no sandbox by default (bench_sandbox.py measures
            # what bwrap adds). MCPEXEC_SANDBOX=default benchmarks the engine sandboxed.
            "MCPEXEC_SANDBOX": SANDBOX,
        }
        if "PYTHONPATH" in os.environ:  # benchmark another checkout with the same venv
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update(self.settings)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [MCPEXEC, "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log_tail()}")
            try:
                ok = httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                ok = False
            if ok and (self.home / "token").is_file():
                return
            time.sleep(0.05)  # the port is not open yet: nothing to await
        raise RuntimeError(f"serve did not answer within {timeout_s:g}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)


#: The submitters' HTTP client: ``bare`` (``timing.BareHttp``, a keep-alive HTTP/1.1 client with
#: next to no CPU of its own) or ``httpx``. On two cores the client shares the CPU with serve and
#: the runs; httpx's ``AsyncClient`` costs about 1 ms of CPU per request, which this benchmark
#: would count against mcpexec (Procrastinate's deferrer in bench_postgres is an in-process
#: library call). ``BENCH_CLIENT=httpx`` (or ``--client httpx``) measures through httpx.
CLIENT = os.environ.get("BENCH_CLIENT", "bare")


class Api:
    def __init__(self, serve: Serve, connections: int, client: str | None = None) -> None:
        self.client = client or CLIENT
        headers = {"Authorization": f"Bearer {serve.token()}"}
        self.bare: BareHttp | None = None
        self.http: httpx.AsyncClient | None = None
        if self.client == "bare":
            self.bare = BareHttp("127.0.0.1", serve.port, headers)
        elif self.client == "httpx":
            pool = connections
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            self.http = httpx.AsyncClient(
                base_url=serve.url, headers=headers, timeout=30.0, limits=limits
            )
        else:
            raise ValueError(f"unknown client {self.client!r} (bare or httpx)")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.bare is not None:
            await self.bare.aclose()

    async def _json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        if self.http is not None:
            response = await self.http.request(
                method, path, json=json, params=params, timeout=timeout
            )
            status, text = response.status_code, response.content
        else:
            assert self.bare is not None
            if params:
                path = f"{path}?{urlencode(params)}"
            with anyio.fail_after(timeout):
                if json is None:
                    status, text = await self.bare.request(method, path, "", b"")
                else:
                    status, text = await self.bare.post(path, orjson.dumps(json))
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {text[:200]!r}")
        body: dict[str, Any] = orjson.loads(text)
        return body

    async def submit(self) -> dict[str, Any]:
        return await self._json("POST", "/api/v1/runs", json=TRUE_RUN)

    async def wait(self, run_id: str, wait_s: float = 30.0) -> dict[str, Any]:
        return await self._json(
            "GET", f"/api/v1/runs/{run_id}", params={"wait": wait_s}, timeout=wait_s + 10
        )

    async def counts(self) -> dict[str, int]:
        body = await self._json("GET", "/api/v1/stats")
        runs: dict[str, int] = body["runs"]
        return runs


# --- (b) throughput and the fill phases -----------------------------------------------------


@dataclass
class Batch:
    n: int
    seconds: float
    runs_per_s: float
    submit_seconds: float
    failed: int


async def submit_and_drain(api: Api, n: int, submitters: int, timeout_s: float) -> Batch:
    """Submit ``n`` runs with ``submitters`` in flight; return once all of them are terminal."""
    before = await api.counts()
    done_before = sum(before[s] for s in TERMINAL)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    last_id: list[str] = []

    async def submitter() -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            run = await api.submit()
            last_id[:] = [run["id"]]

    async def body() -> tuple[float, float]:
        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        submitted = time.perf_counter() - started
        # Runs are claimed in submission order, so the last one submitted is among the last few
        # to finish: long-poll it, then confirm with the counts (poll briefly if a few remain).
        await api.wait(last_id[0], min(timeout_s, 300.0))
        while True:
            counts = await api.counts()
            if sum(counts[s] for s in TERMINAL) - done_before >= n:
                return time.perf_counter() - started, submitted
            await asyncio.sleep(0.005)

    seconds, submitted = await asyncio.wait_for(body(), timeout_s)
    after = await api.counts()
    failed = after["failed"] + after["cancelled"] - before["failed"] - before["cancelled"]
    return Batch(n, seconds, n / seconds, submitted, failed)


# --- (c) latency at idle ------------------------------------------------------------------------


@dataclass
class Latency:
    n: int
    start_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    roundtrip_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in (
            ("submit_to_start_ms", self.start_ms),
            ("submit_to_completed_ms", self.done_ms),
            ("client_roundtrip_ms", self.roundtrip_ms),
        ):
            out[name] = {f"p{p}": round(percentile(values, p), 2) for p in (50, 95, 99)}
        return out


async def idle_latency(api: Api, n: int, timeout_s: float) -> Latency:
    result = Latency(n)

    async def body() -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            run = await api.submit()
            done = await api.wait(run["id"], 30.0)
            result.roundtrip_ms.append((time.perf_counter() - t0) * 1000)
            if done["status"] != "completed":
                raise RuntimeError(f"run {run['id']} ended {done['status']}: {done['failure']}")
            created = parse_ts(done["created_at"])
            result.start_ms.append((parse_ts(done["started_at"]) - created).total_seconds() * 1e3)
            result.done_ms.append((parse_ts(done["finished_at"]) - created).total_seconds() * 1e3)

    await asyncio.wait_for(body(), timeout_s)
    return result


# --- (f) batch submit and (g) bulk status read -------------------------------------------------


async def _in_flight(jobs: list[Any], width: int) -> list[Any]:
    """Await the coroutines of ``jobs`` with at most ``width`` in flight, results in order."""
    sem = asyncio.Semaphore(width)

    async def one(job: Any) -> Any:
        async with sem:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def submit_rates(
    api: Api, serve: Serve, n: int, batch_size: int, submitters: int, timeout_s: float
) -> dict[str, Any]:
    """(f): ``n`` single submits, then ``n`` runs in batches; both phases timed alone."""
    later = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    spec = {**TRUE_RUN, "run_at": later}
    helpers = helper_pids(serve.pid)
    out: dict[str, Any] = {"n": n, "batch_size": batch_size}

    cpu0, started = serve_cpu(serve.pid, helpers), time.perf_counter()
    singles = [api._json("POST", "/api/v1/runs", json=spec) for _ in range(n)]
    runs = await asyncio.wait_for(_in_flight(singles, submitters), timeout_s)
    seconds, cpu = time.perf_counter() - started, serve_cpu(serve.pid, helpers) - cpu0
    out["single"] = {"seconds": seconds, "runs_per_s": n / seconds, "cpu_ms": cpu.own * 1e3 / n}
    ids = [r["id"] for r in runs]

    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    cpu0, started = serve_cpu(serve.pid, helpers), time.perf_counter()
    batches = [
        api._json("POST", "/api/v1/runs:batch", json={"runs": [spec] * size}) for size in sizes
    ]
    answers = await asyncio.wait_for(_in_flight(batches, submitters), timeout_s)
    seconds, cpu = time.perf_counter() - started, serve_cpu(serve.pid, helpers) - cpu0
    created = sum(a["created"] for a in answers)
    if created != n:
        raise RuntimeError(f"batch submit stored {created} of {n} runs")
    out["batch"] = {"seconds": seconds, "runs_per_s": n / seconds, "cpu_ms": cpu.own * 1e3 / n}
    out["ratio"] = out["batch"]["runs_per_s"] / out["single"]["runs_per_s"]
    out["ids"] = ids + [r["run"]["id"] for a in answers for r in a["results"]]
    return out


async def read_rates(
    api: Api, ids: list[str], per_read: int, submitters: int, timeout_s: float
) -> dict[str, Any]:
    """(g): the status of every run of ``ids``, by single GETs, then by bulk reads."""
    started = time.perf_counter()
    singles = [api._json("GET", f"/api/v1/runs/{run_id}") for run_id in ids]
    await asyncio.wait_for(_in_flight(singles, submitters), timeout_s)
    single_s = time.perf_counter() - started

    started = time.perf_counter()
    reads = [
        api._json(
            "GET",
            "/api/v1/runs",
            params={"ids": ",".join(ids[i : i + per_read]), "fields": "status,exit_code"},
        )
        for i in range(0, len(ids), per_read)
    ]
    pages = await asyncio.wait_for(_in_flight(reads, submitters), timeout_s)
    bulk_s = time.perf_counter() - started
    found = sum(len(p["runs"]) for p in pages)
    if found != len(ids):
        raise RuntimeError(f"the bulk reads found {found} of {len(ids)} runs")
    n = len(ids)
    return {
        "n": n,
        "per_read": per_read,
        "single": {"seconds": single_s, "statuses_per_s": n / single_s},
        "bulk": {"seconds": bulk_s, "statuses_per_s": n / bulk_s},
        "ratio": single_s / bulk_s,
    }


# --- the whole benchmark ------------------------------------------------------------------------


@dataclass
class Config:
    n: int
    raw_n: int
    concurrency: int
    workers: int
    submitters: int
    latency_n: int
    rss_early: int
    rss_total: int
    timeout_s: float
    batch_size: int = 100
    ids_per_read: int = 500
    client: str = CLIENT


@dataclass(frozen=True)
class Variant:
    """A name and the settings (``MCPEXEC_*`` variables) serve gets for it; ``PYTHONPATH``
    runs another checkout's ``src`` (e.g. the tree before a change) in the same benchmark."""

    name: str
    settings: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition(":")
        settings = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not (key.startswith("MCPEXEC_") or key == "PYTHONPATH"):
                raise argparse.ArgumentTypeError(
                    f"{item!r}: expected MCPEXEC_NAME=value or PYTHONPATH=dir"
                )
            settings[key] = value
        return cls(name or "default", settings)

    def describe(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.settings.items()) or "(defaults)"


async def bench(cfg: Config, keep_home: bool, variants: list[Variant]) -> list[dict[str, Any]]:
    """Each variant against its own serve; the raw ceiling before, between and after them (on a
    shared machine the ceiling itself drifts: a variant's ratio uses the two around it)."""
    async with contextlib.AsyncExitStack() as stack:
        box = None
        if SANDBOX != "none":
            box = await stack.enter_async_context(BwrapCeiling(strict=SANDBOX == "strict"))

        async def ceiling() -> float:
            return await raw_ceiling(cfg.raw_n, cfg.concurrency, cfg.timeout_s, box)

        ceiling_of = "`true`" if box is None else box.describe()
        return await _variants(cfg, keep_home, variants, ceiling, ceiling_of)


async def _variants(
    cfg: Config,
    keep_home: bool,
    variants: list[Variant],
    ceiling: Callable[[], Awaitable[float]],
    ceiling_of: str,
) -> list[dict[str, Any]]:
    ceilings = [await ceiling()]
    out = []
    for variant in variants:
        results: dict[str, Any] = {"config": asdict(cfg), "variant": asdict(variant)}
        results.update(await _one_serve(cfg, keep_home, variant))
        ceilings.append(await ceiling())
        before, after = ceilings[-2:]
        raw = (before + after) / 2
        results["ceiling_of"] = ceiling_of
        results["raw_runs_per_s"] = raw
        results["raw_runs_per_s_before_after"] = [before, after]
        results["ratio"] = results["serve_runs_per_s"] / raw
        out.append(results)
    return out


async def _one_serve(cfg: Config, keep_home: bool, variant: Variant) -> dict[str, Any]:
    results: dict[str, Any] = {}
    serve = Serve(cfg.workers, keep_home, variant.settings)
    try:
        serve.start()
        print(
            f"[{variant.name}] serve pid {serve.pid} on {serve.url}, home {serve.home}",
            file=sys.stderr,
        )
        results["serve_home"] = str(serve.home) if keep_home else None
        api = Api(serve, connections=cfg.submitters + 2, client=cfg.client)
        try:
            results.update(await _against_serve(cfg, serve, api))
        finally:
            await api.close()
        results["serve_log_errors"] = [
            line
            for line in serve.log_tail(400).splitlines()
            if " ERROR " in line and "NO SANDBOX" not in line  # logged for every run, on purpose
        ][:5]
    except BaseException:
        print(f"serve log (tail):\n{serve.log_tail()}", file=sys.stderr)
        raise
    finally:
        serve.stop()
    return results


async def _against_serve(cfg: Config, serve: Serve, api: Api) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total = 0
    rss_start = rss_mb(serve.pid)

    # Warm-up, which is also the first RSS mark.
    warm = await submit_and_drain(api, cfg.rss_early, cfg.submitters, cfg.timeout_s)
    total += warm.n
    out["rss_start_mb"] = rss_start
    out["rss_early_mb"] = rss_mb(serve.pid)
    out["rss_early_runs"] = total

    latency = await idle_latency(api, cfg.latency_n, cfg.timeout_s)
    total += latency.n
    out["latency"] = latency.summary()

    helpers = helper_pids(serve.pid)
    cpu0, client0 = serve_cpu(serve.pid, helpers), self_cpu_s()
    batch = await submit_and_drain(api, cfg.n, cfg.submitters, cfg.timeout_s)
    cpu, client_cpu = serve_cpu(serve.pid, helpers) - cpu0, self_cpu_s() - client0
    out["helper_processes"] = len(helpers)
    total += batch.n
    out["serve_runs_per_s"] = batch.runs_per_s
    out["throughput"] = asdict(batch)
    out["cpu_ms_per_run"] = cpu.own * 1000 / batch.n
    out["children_cpu_ms_per_run"] = cpu.children * 1000 / batch.n
    out["client_cpu_ms_per_run"] = client_cpu * 1000 / batch.n
    out["cpu_utilisation"] = cpu.own / batch.seconds

    rest = cfg.rss_total - total
    while rest > 0:
        step = min(rest, 2000)
        await submit_and_drain(api, step, cfg.submitters, cfg.timeout_s)
        rest -= step
        total += step
    out["rss_total_mb"] = rss_mb(serve.pid)
    out["rss_total_runs"] = total
    out["rss_growth_mb"] = out["rss_total_mb"] - out["rss_early_mb"]
    out["failed_runs"] = warm.failed + batch.failed

    if not cfg.batch_size:  # asked to skip them (a tree from before the endpoints, say)
        return out
    # Last: (f) leaves 2N runs pending (due in a day) and (g) reads their statuses.
    submits = await submit_rates(api, serve, cfg.n, cfg.batch_size, cfg.submitters, cfg.timeout_s)
    ids = submits.pop("ids")
    out["batch_submit"] = submits
    out["bulk_read"] = await read_rates(api, ids, cfg.ids_per_read, cfg.submitters, cfg.timeout_s)
    return out


# --- the report ---------------------------------------------------------------------------------


def _verdict(ok: bool, goal: bool | None = None) -> str:
    if not ok:
        return "MISS"
    return "ok (goal met)" if goal else "ok"


def report(r: dict[str, Any]) -> str:
    cfg = r["config"]
    variant = Variant(**r["variant"])
    lat = r["latency"]
    start, done, rt = (
        lat["submit_to_start_ms"],
        lat["submit_to_completed_ms"],
        lat["client_roundtrip_ms"],
    )
    ratio = r["ratio"]
    before, after = r["raw_runs_per_s_before_after"]
    cpu = r["cpu_ms_per_run"]
    growth = r["rss_growth_mb"]
    rows = [
        (
            f"(a) raw ceiling: asyncio spawn {r['ceiling_of']}",
            f"{r['raw_runs_per_s']:.0f} runs/s (before {before:.0f}, after {after:.0f})",
            "",
            "",
        ),
        ("(b) mcpexec end to end", f"{r['serve_runs_per_s']:.0f} runs/s", "", ""),
        (
            "    ratio b/a",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO} (goal {GOAL_RATIO})",
            _verdict(ratio >= TARGET_RATIO, ratio >= GOAL_RATIO),
        ),
        (
            "(c) submit->start p50/p95/p99",
            f"{start['p50']:.2f} / {start['p95']:.2f} / {start['p99']:.2f} ms",
            f"p50 <= {TARGET_START_P50_MS:g} ms (goal {GOAL_START_P50_MS:g})",
            _verdict(start["p50"] <= TARGET_START_P50_MS, start["p50"] <= GOAL_START_P50_MS),
        ),
        (
            "    submit->completed p50/p95/p99",
            f"{done['p50']:.2f} / {done['p95']:.2f} / {done['p99']:.2f} ms",
            "",
            "",
        ),
        (
            "    client round trip p50/p95/p99",
            f"{rt['p50']:.2f} / {rt['p95']:.2f} / {rt['p99']:.2f} ms",
            "",
            "",
        ),
        (
            f"(d) serve RSS after {r['rss_early_runs']} / {r['rss_total_runs']} runs",
            f"{r['rss_early_mb']:.1f} / {r['rss_total_mb']:.1f} MB",
            "",
            "",
        ),
        (
            "    RSS growth",
            f"{growth:+.1f} MB",
            f"<= {TARGET_RSS_GROWTH_MB:g} MB",
            _verdict(growth <= TARGET_RSS_GROWTH_MB),
        ),
        (
            f"(e) serve CPU per run (+{r.get('helper_processes', 0)} helper proc.)",
            f"{cpu:.2f} ms",
            f"<= {TARGET_CPU_MS:g} ms",
            _verdict(cpu <= TARGET_CPU_MS),
        ),
        ("    children CPU per run (not above)", f"{r['children_cpu_ms_per_run']:.2f} ms", "", ""),
        ("    bench client CPU per run", f"{r['client_cpu_ms_per_run']:.2f} ms", "", ""),
        ("    serve CPU utilisation in (b)", f"{r['cpu_utilisation']:.0%} of one core", "", ""),
        *_batch_rows(r),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("metric", "result", "target", "verdict")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    batch = r["throughput"]
    lines = [
        f"mcpexec engine benchmark — {platform.node()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {datetime.now().astimezone():%Y-%m-%d %H:%M}",
        f"N={cfg['n']} (raw N={cfg['raw_n']}, C={cfg['concurrency']}), serve --workers "
        f"{cfg['workers']}, {cfg['submitters']} HTTP submitters ({cfg['client']} client), "
        f"{cfg['latency_n']} idle runs, "
        f"MCPEXEC_SANDBOX={SANDBOX}",
        f"variant {variant.name}: {variant.describe()}",
        "",
        line(header),
        line(tuple("-" * w for w in widths)),
        *(line(row) for row in rows),
        "",
        f"(b) {batch['n']} runs in {batch['seconds']:.2f} s (all submitted after "
        f"{batch['submit_seconds']:.2f} s); failed or cancelled runs: {r['failed_runs']}",
    ]
    if r["serve_log_errors"]:
        lines.append("serve logged errors: " + " | ".join(r["serve_log_errors"]))
    return "\n".join(lines)


def _batch_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(f) and (g): each against its single-request baseline of the same run."""
    f, g = r.get("batch_submit"), r.get("bulk_read")
    if f is None or g is None:
        return []
    one, many = f["single"], f["batch"]
    return [
        (
            f"(f) submit {f['n']} runs, single POST",
            f"{one['runs_per_s']:.0f} runs/s, serve CPU {one['cpu_ms']:.2f} ms/run",
            "",
            "",
        ),
        (
            f"    in batches of {f['batch_size']}",
            f"{many['runs_per_s']:.0f} runs/s, serve CPU {many['cpu_ms']:.2f} ms/run",
            "",
            "",
        ),
        ("    ratio batch/single", f"{f['ratio']:.1f}x", "", ""),
        (
            f"(g) read {g['n']} statuses, single GET",
            f"{g['single']['statuses_per_s']:.0f} statuses/s",
            "",
            "",
        ),
        (
            f"    bulk reads of {g['per_read']} ids",
            f"{g['bulk']['statuses_per_s']:.0f} statuses/s",
            "",
            "",
        ),
        ("    ratio bulk/single", f"{g['ratio']:.1f}x", "", ""),
    ]


def compare(runs: list[dict[str, Any]]) -> str:
    """One line per variant, each against the first (the baseline of the same run)."""
    base = runs[0]
    w = max(12, *(len(r["variant"]["name"]) for r in runs))
    header = (
        f"{'variant':<{w}} {'runs/s':>7} {'ratio b/a':>9} {'vs ' + base['variant']['name']:>10} "
        f"{'CPU ms/run':>10} {'vs':>6} {'start p50':>9} {'done p50':>9}"
    )
    lines = ["comparison (each variant's ratio against the ceiling measured around it):", header]
    for r in runs:
        lat = r["latency"]
        lines.append(
            f"{r['variant']['name']:<{w}} {r['serve_runs_per_s']:>7.0f} {r['ratio']:>9.2f} "
            f"{r['ratio'] / base['ratio']:>9.2f}x {r['cpu_ms_per_run']:>10.2f} "
            f"{r['cpu_ms_per_run'] / base['cpu_ms_per_run']:>5.2f}x "
            f"{lat['submit_to_start_ms']['p50']:>7.2f}ms "
            f"{lat['submit_to_completed_ms']['p50']:>7.2f}ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="runs in (a) and (b)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--workers", type=int, default=4, help="serve --workers")
    parser.add_argument("--concurrency", type=int, default=4, help="raw ceiling concurrency")
    parser.add_argument("--submitters", type=int, default=8, help="HTTP requests in flight")
    parser.add_argument("--latency-n", type=int, default=200, help="sequential runs for (c)")
    parser.add_argument("--rss-early", type=int, default=500, help="first RSS mark (runs)")
    parser.add_argument("--rss-total", type=int, default=5000, help="second RSS mark (runs)")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each phase (s)")
    parser.add_argument(
        "--batch-size", type=int, default=100, help="runs per batch in (f); 0 skips (f) and (g)"
    )
    parser.add_argument("--ids-per-read", type=int, default=500, help="ids per bulk read (g)")
    parser.add_argument(
        "--client", choices=("bare", "httpx"), default=CLIENT, help="the submitters' HTTP client"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep-home", action="store_true", help="keep serve's temporary home")
    parser.add_argument(
        "--variant",
        type=Variant.parse,
        action="append",
        metavar="NAME:MCPEXEC_X=V[,...]",
        help="run the phases against a serve with these settings (repeatable; the first is the "
        "baseline of the comparison)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.latency_n, args.rss_early, args.rss_total = 300, 50, 100, 600
    cfg = Config(
        n=args.n,
        raw_n=args.n,
        concurrency=args.concurrency,
        workers=args.workers,
        submitters=args.submitters,
        latency_n=args.latency_n,
        rss_early=args.rss_early,
        rss_total=max(args.rss_total, args.rss_early + args.latency_n + args.n),
        timeout_s=args.timeout,
        batch_size=args.batch_size,
        ids_per_read=args.ids_per_read,
        client=args.client,
    )
    variants = args.variant or [Variant("default", {})]
    runs = asyncio.run(bench(cfg, args.keep_home, variants))
    print("\n\n".join(report(r) for r in runs))
    if len(runs) > 1:
        print()
        print(compare(runs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
