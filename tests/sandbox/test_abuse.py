"""The 22 abuse cases of ``shared/notes/sandbox.md`` against the real sandbox of this host.

Each case asserts its outcome and then :func:`assert_clean`: no process of a run left (environ
marker of the executor and an argv marker), no attempt cgroup, no workdir, the executor still
answering. Network cases only ever target loopback services the test starts itself. Task-side
sleeps only keep processes alive long enough to be attacked or killed; every wait is bounded.
"""

# Polling /proc for another process's state has no event to await; spawning host helper
# processes from async tests is the point of several cases.
# ruff: noqa: ASYNC110, ASYNC220, ASYNC221, ASYNC240
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor_helpers import SPAWN, helper_processes, layer
from mcpexec.executor.base import ExecResult
from mcpexec.executor.procfs import INSTANCE_VAR, pids_with_env
from mcpexec.executor.sandbox import SandboxExecutor
from mcpexec.models import FailureKind

from .conftest import (
    NOT_ROOT,
    ROOT,
    Sink,
    assert_clean,
    cgroup_children,
    execute,
    need,
    processes_with_arg,
    request,
    sleeping,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def marker() -> str:
    """A unique sleep duration: findable in /proc, harmless as an argument."""
    return f"1000.{random.randrange(10**9):09d}"


def kind(result: ExecResult) -> FailureKind | None:
    return None if result.failure is None else result.failure.kind


def py(source: str) -> dict[str, object]:
    return {"command": ["python3", "-c", textwrap.dedent(source)]}


# 1 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param({"command": ["bash", "-c", ":(){ :|:& };:; sleep 5"]}, id="bash"),
        pytest.param(
            py("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"), id="python"
        ),
    ],
)
async def test_01_fork_bomb_is_stopped_at_pids_max(
    sandbox: SandboxExecutor, bomb: dict[str, object]
) -> None:
    await need(sandbox, "pids")
    # The run ends by exit (bash's main shell returns at once) or by the wall timeout.
    result, _ = await execute(sandbox, {**bomb, "timeout_s": 2}, pids=64)
    assert any("pids.max" in n for n in result.notes), result.notes
    assert result.limits is not None
    assert result.limits["pids"] == 64
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks
    await assert_clean(sandbox)


# 2 ------------------------------------------------------------------------------------------------
async def test_02_memory_hog_is_killed_by_the_memcg(sandbox: SandboxExecutor) -> None:
    await need(sandbox, "memory")
    hog = py(
        """
        chunks = []
        for _ in range(80):  # 4 GiB in 50 MiB chunks, each page touched
            chunks.append(bytearray(50 * 1024 * 1024))
        print("survived")
        """
    )
    result, sink = await execute(sandbox, hog, memory_mb=128)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.MEMORY_LIMIT, result
    assert "survived" not in sink.out
    assert result.limits is not None
    assert result.limits["memory_by"].startswith("cgroup")
    await assert_clean(sandbox)


# 3 ------------------------------------------------------------------------------------------------
async def test_03_disk_fillers(sandbox: SandboxExecutor) -> None:
    await need(sandbox, "disk")
    script = py(
        """
        import errno, os
        def attempt(label, fn):
            try:
                fn()
                print(label, "ok")
            except OSError as e:
                print(label, errno.errorcode[e.errno])
        def big():  # (a) one 100 MiB file against a 16 MiB file size limit
            with open("big", "wb") as f:
                for _ in range(100):
                    f.write(b"x" * 1024 * 1024)
        def many():  # (b) 20 x 15 MiB files against a 64 MiB workdir
            for i in range(20):
                with open(f"f{i}", "wb") as f:
                    for _ in range(15):
                        f.write(b"y" * 1024 * 1024)
        def tmp():  # (c) fill the private /tmp (64 MiB) with 8 MiB files
            for i in range(12):
                with open(f"/tmp/fill{i}", "wb") as f:
                    for _ in range(8):
                        f.write(b"z" * 1024 * 1024)
        def sparse():  # (d) a 2 GiB sparse file via seek
            with open("sparse", "wb") as f:
                f.seek(2 * 1024**3)
                f.write(b"!")
        for label, fn in (("a", big), ("b", many), ("c", tmp), ("d", sparse)):
            attempt(label, fn)
        """
    )
    result, sink = await execute(sandbox, script, file_size_mb=16, disk_mb=64, memory_mb=512)
    lines = dict(line.split() for line in sink.out.splitlines())
    assert lines == {"a": "EFBIG", "b": "ENOSPC", "c": "ENOSPC", "d": "EFBIG"}, sink.out
    assert result.limits is not None
    assert result.limits["disk_mb"] == 64
    await assert_clean(sandbox)


# 4 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flood",
    [
        pytest.param("yes | head -c 20000000", id="stdout"),
        pytest.param("yes | head -c 20000000 1>&2", id="stderr"),
        pytest.param("head -c 5000000 /dev/urandom", id="binary-no-newline"),
    ],
)
async def test_04_output_flood_is_capped(sandbox: SandboxExecutor, flood: str) -> None:
    cap = 64 * 1024
    result, sink = await execute(sandbox, {"shell": flood}, max_output_bytes=cap)
    assert result.output_truncated
    for stream in sink.total:
        assert sink.total[stream] <= cap + 64 * 1024 + 100  # head + tail + marker
    await assert_clean(sandbox)


# 5 ------------------------------------------------------------------------------------------------
async def test_05_sigterm_ignoring_sleeper_is_killed_at_the_deadline(
    sandbox: SandboxExecutor,
) -> None:
    m = marker()
    src = f"import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep({m})"
    result, _ = await execute(sandbox, py(src), timeout_s=1.0, kill_grace_s=0.3)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    await assert_clean(sandbox, m)


async def test_05_sigstopped_run_is_killed_at_the_deadline(sandbox: SandboxExecutor) -> None:
    result, _ = await execute(sandbox, {"shell": "kill -STOP $$; echo resumed"}, timeout_s=1.0)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    await assert_clean(sandbox)


async def test_05_cpu_burn_hits_the_cpu_limit_first(sandbox: SandboxExecutor) -> None:
    result, _ = await execute(sandbox, py("while True: pass"), timeout_s=20, cpu_s=1)
    assert kind(result) is FailureKind.CPU_LIMIT, result
    await assert_clean(sandbox)


# 6 ------------------------------------------------------------------------------------------------
def daemon(m: str, *, parent: str, keep_stdout: bool, close_fds: bool) -> dict[str, object]:
    """A double-forked setsid daemon sleeping ``m`` seconds; ``parent`` is what the run's main
    process does afterwards."""
    src = f"""
        import os, signal, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                if {close_fds!r}:
                    os.closerange(0, 1024)
                elif not {keep_stdout!r}:
                    fd = os.open("/dev/null", os.O_RDWR)
                    for n in (0, 1, 2):
                        os.dup2(fd, n)
                open("ready", "w").close()
                os.execvp("sleep", ["sleep", "{m}"])
            os._exit(0)
        os.wait()
        while not os.path.exists("ready"):
            time.sleep(0.01)
        print("daemon started", flush=True)
        {parent}
    """
    return py(src)


@pytest.mark.parametrize(
    ("variant", "parent", "keep", "close"),
    [
        ("a-parent-exits", "sys.exit(0)", False, False),
        ("b-parent-outlives-timeout", "time.sleep(100)", False, False),
        ("c-holds-stdout", "sys.exit(0)", True, False),
        ("d-closes-fds-ignores-signals", "sys.exit(0)", False, True),
    ],
)
async def test_06_double_fork_daemons_never_outlive_the_run(
    sandbox: SandboxExecutor, variant: str, parent: str, keep: bool, close: bool
) -> None:
    m = marker()
    spec = daemon(m, parent=parent, keep_stdout=keep, close_fds=close)
    result, sink = await execute(sandbox, {**spec, "timeout_s": 3}, kill_grace_s=0.3)
    assert "daemon started" in sink.out
    if variant.startswith("b"):
        assert result.failure is not None
        assert result.failure.kind is FailureKind.TIMEOUT
    else:
        assert result.succeeded, result
    await assert_clean(sandbox, m)


async def test_06b_kill_within_5ms_of_spawn_never_leaks(sandbox: SandboxExecutor) -> None:
    """The deadline starts when the child is spawned: a 0-5 ms timeout kills bwrap while it is
    still setting up (bwrap's --die-with-parent alone lost these: the cgroup sweep catches them)."""
    m = marker()
    spec = {"shell": f"setsid sleep {m} & sleep {m}"}
    for i in range(50):
        timeout = (i % 6) / 1000 or 0.0001
        result, _ = await execute(sandbox, spec, timeout_s=timeout, kill_grace_s=0.05)
        assert result.failure is not None
        assert result.failure.kind is FailureKind.TIMEOUT
        assert processes_with_arg(m) == [], f"leaked at iteration {i}"
    await assert_clean(sandbox, m)


# 7 ------------------------------------------------------------------------------------------------
SERVER_SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path[:0] = [sys.argv[3]]
from conftest import request, Sink
from mcpexec.executor.sandbox import SandboxConfig, SandboxExecutor

async def main():
    ex = SandboxExecutor(Path(sys.argv[1]), SandboxConfig(), spawn_helper=sys.argv[4] == "1")
    await ex.start()
    assert (ex.spawner is not None) == (sys.argv[4] == "1")
    print(ex.instance_id, flush=True)
    spec = {"shell": f"setsid sleep {sys.argv[2]} & sleep {sys.argv[2]}"}
    await ex.execute(request(spec), Sink(), asyncio.Event())

asyncio.run(main())
"""


@layer(NOT_ROOT)  # uses the root work dir layout
async def test_07_server_killed_mid_run_leaves_nothing(sandbox: SandboxExecutor) -> None:
    m = marker()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER_SCRIPT,
            "/tmp/mcpexec-sandbox",
            m,
            str(Path(__file__).parent),
            "1" if SPAWN.helper else "0",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        instance = proc.stdout.readline().decode().strip()
        deadline = time.monotonic() + 20
        while len(processes_with_arg(m)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert processes_with_arg(m)
        assert bool(helper_processes(proc.pid)) == SPAWN.helper
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()  # else a ResourceWarning (warnings are errors)
    deadline = time.monotonic() + 5
    while (processes_with_arg(m) or helper_processes(proc.pid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert processes_with_arg(m) == []
    assert helper_processes(proc.pid) == []
    # 22: the next start-up (this fixture's executor was started before; start another) removes
    # the dead server's cgroups and workdirs.
    stale = Path("/tmp/mcpexec-sandbox") / instance
    assert stale.exists()
    fresh = SandboxExecutor(Path("/tmp/mcpexec-sandbox"), sandbox.config)
    await fresh.start()
    try:
        assert not stale.exists()
        assert any(instance in s for s in fresh.stale_removed)
    finally:
        await fresh.stop()
    await assert_clean(sandbox, m)


# 8 ------------------------------------------------------------------------------------------------
@pytest.fixture
def host_canary(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A canary value in files the run must not read: a root-only file in /root (or tmp_path),
    a world-readable file under a 0700 directory, and the server's own environment."""
    value = f"canary-{uuid.uuid4().hex}"
    places = [Path("/root") if ROOT and Path("/root").is_dir() else tmp_path]
    files = []
    for base in places:
        f = base / f".mcpexec-canary-{uuid.uuid4().hex[:8]}"
        f.write_text(value)
        f.chmod(0o600)
        files.append(f)
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "readable.txt").write_text(value)
    (hidden / "readable.txt").chmod(0o644)
    files.append(hidden / "readable.txt")
    os.environ["MCP_SECRET_TOKEN"] = value
    try:
        yield value, files
    finally:
        os.environ.pop("MCP_SECRET_TOKEN", None)
        for f in files:
            f.unlink(missing_ok=True)


async def test_08_host_secrets_are_unreadable(
    sandbox: SandboxExecutor, host_canary: tuple[str, list[Path]]
) -> None:
    value, files = host_canary
    targets = [
        "/etc/shadow",
        "/etc/gshadow",
        "/root/.ssh/id_rsa",
        "/root/.ssh/id_ed25519",
        f"/proc/{os.getpid()}/environ",
        "/proc/1/environ",
        "/var/run/docker.sock",
        "/run/postgresql",
        "/dev/kvm",
        *map(str, files),
    ]
    shell = "; ".join(f"cat {t} 2>&1 | head -c 300; echo" for t in targets)
    shell += "; env; cat /proc/self/environ; ls -la / /root /home 2>&1"
    _result, sink = await execute(sandbox, {"shell": shell})
    assert value not in sink.out
    assert value not in sink.err
    assert "root:" not in sink.out.replace("root:x:0:0", "")  # no shadow line
    assert f"pid {os.getpid()}" not in sink.out
    await assert_clean(sandbox)


# 9 ------------------------------------------------------------------------------------------------
async def test_09_writes_outside_the_workdir_are_denied_or_private(
    sandbox: SandboxExecutor,
) -> None:
    name = f"mcpexec-escape-{uuid.uuid4().hex[:8]}"
    targets = [
        f"/usr/{name}",
        f"/etc/{name}",
        f"/{name}",
        f"../{name}",
        f"/root/{name}",
        f"/tmp/{name}",
        f"/dev/shm/{name}",
    ]
    shell = "; ".join(f"echo x > {t} && echo WROTE {t}" for t in targets)
    shell += "; echo sandbox-name > /proc/sys/kernel/hostname && echo WROTE hostname"
    before = socket.gethostname()
    _result, sink = await execute(sandbox, {"shell": shell})
    for t in targets:
        path = Path(t if t.startswith("/") else f"/{name}")
        assert not path.exists(), path
    assert not (sandbox.instance_dir / name).exists()
    assert not Path("/tmp/mcpexec-sandbox", name).exists()
    assert socket.gethostname() == before
    # Only the private /tmp and /dev (bwrap's own tmpfs) accept writes; both vanish with it.
    wrote = [line for line in sink.out.splitlines() if line.startswith("WROTE")]
    assert set(wrote) <= {f"WROTE /tmp/{name}", f"WROTE /dev/shm/{name}"}, wrote
    await assert_clean(sandbox)


# 10 -----------------------------------------------------------------------------------------------
async def test_10_symlinks_fifos_and_hard_links_are_not_collected(
    sandbox: SandboxExecutor, host_canary: tuple[str, list[Path]]
) -> None:
    value, _files = host_canary
    shell = (
        "ln -s / root; cat root/root/.mcpexec-canary-* 2>&1; "
        "ln -s /etc/shadow $MCPEXEC_OUTPUT_DIR/out.txt; "
        "ln -s /etc/passwd $MCPEXEC_OUTPUT_DIR/passwd; "
        "mkfifo $MCPEXEC_OUTPUT_DIR/result.txt; "
        "ln /etc/passwd $MCPEXEC_OUTPUT_DIR/hard 2>&1 || echo no-hardlink; "
        "echo fine > $MCPEXEC_OUTPUT_DIR/real.txt"
    )
    result, sink = await execute(sandbox, {"shell": shell})
    assert value not in sink.out
    assert "no-hardlink" in sink.out
    assert set(sink.artifacts) == {"real.txt"}
    assert set(result.refused_artifacts) == {"out.txt", "passwd", "result.txt"}
    await assert_clean(sandbox)


# 11, 12 -------------------------------------------------------------------------------------------
class LoopbackService:
    """A TCP and a UDP socket on 127.0.0.1 and an abstract unix socket, owned by the test."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_port = self.udp.getsockname()[1]
        self.abstract = f"mcpexec-test-{uuid.uuid4().hex[:8]}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.tcp.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.sendall(self.token.encode())

    def udp_received(self) -> bytes | None:
        self.udp.setblocking(False)
        try:
            return self.udp.recv(100)
        except BlockingIOError:
            return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in (self.tcp, self.udp, self.unix):
            s.close()


@pytest.fixture
def service() -> Iterator[LoopbackService]:
    svc = LoopbackService()
    try:
        yield svc
    finally:
        svc.close()


def client_script(svc: LoopbackService) -> dict[str, object]:
    return py(
        f"""
        import socket
        def attempt(label, fn):
            try:
                print(label, fn())
            except OSError as e:
                print(label, "refused", type(e).__name__)
        def tcp():
            with socket.create_connection(("127.0.0.1", {svc.port}), timeout=2) as s:
                return s.recv(100).decode()
        def udp():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"ping", ("127.0.0.1", {svc.udp_port}))
                return "sent"
        def abstract():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect("\\0{svc.abstract}")
                return "connected"
        attempt("tcp", tcp)
        attempt("udp", udp)
        attempt("abstract", abstract)
        """
    )


async def test_11_network_off_reaches_no_host_service(
    sandbox: SandboxExecutor, service: LoopbackService
) -> None:
    result, sink = await execute(sandbox, client_script(service))
    assert service.token not in sink.out
    assert service.connections == 0
    assert "abstract refused" in sink.out
    assert service.udp_received() is None  # the run is over: a datagram would be here by now
    assert result.limits is not None
    assert result.limits["network"] is False
    assert "net=off" in (result.isolation or "")
    await assert_clean(sandbox)


async def test_12_network_on_reaches_the_loopback_service(
    sandbox: SandboxExecutor, service: LoopbackService
) -> None:
    spec = {**client_script(service), "network": True}
    result, sink = await execute(sandbox, spec)
    assert f"tcp {service.token}" in sink.out
    assert service.connections == 1
    assert "net=on" in (result.isolation or "")
    await assert_clean(sandbox)


# 13 -----------------------------------------------------------------------------------------------
async def test_13_secrets_reach_only_the_run_and_never_logs_or_argv(
    sandbox: SandboxExecutor, host_canary: tuple[str, list[Path]]
) -> None:
    value = sandbox.secrets["API_TOKEN"]
    host_value, _ = host_canary
    m = marker()
    digest = hashlib.sha256(value.encode()).hexdigest()
    shell = (
        'printf %s "$API_TOKEN" | sha256sum; '
        'echo "$API_TOKEN"; printf %s "$API_TOKEN" | base64; '
        "env; cat /proc/self/environ /proc/1/environ; echo; "
        'test -z "$OTHER" && echo other-absent; '
        f"sleep {m}"
    )
    spec = {"shell": shell, "secrets": ["API_TOKEN"]}
    cancel = asyncio.Event()
    task = asyncio.ensure_future(execute(sandbox, spec, cancel=cancel, timeout_s=30))
    deadline = time.monotonic() + 20
    # Bounded poll: the run's own sleep, which runs once everything before it has printed.
    while not sleeping(m) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    # While it runs: no process's argv on the host carries the value (bwrap got it via --args).
    assert sleeping(m)
    assert processes_with_arg(value) == []
    cancel.set()
    _result, sink = await task
    assert f"{digest}  -" in sink.out  # the run saw the exact value
    assert "other-absent" in sink.out
    assert value not in sink.out
    assert value not in sink.err
    assert "[redacted:API_TOKEN]" in sink.out
    assert sink.out.count("[redacted:API_TOKEN]") >= 3  # echo, base64, env
    assert host_value not in sink.out  # the server's own environment never reaches the run
    assert "MCP_SECRET_TOKEN" not in sink.out
    await assert_clean(sandbox, m)


async def test_13_unknown_secret_is_refused_at_submit(sandbox: SandboxExecutor) -> None:
    spec = request({"command": ["true"], "secrets": ["NOPE", "API_TOKEN"]}).spec
    problem = sandbox.check_spec(spec)
    assert problem is not None
    assert "NOPE" in problem
    assert "API_TOKEN" not in problem


# 14 -----------------------------------------------------------------------------------------------
async def test_14_kill_minus_one_hurts_nobody_outside(sandbox: SandboxExecutor) -> None:
    m = marker()
    # A host process of the sandbox uid (when root) and a concurrent sandboxed run.
    uid = sandbox.uid
    host = subprocess.Popen(
        ["sleep", m],
        preexec_fn=(lambda: os.setresuid(uid, uid, uid)) if ROOT else None,  # noqa: PLW1509
    )
    try:
        other = asyncio.ensure_future(
            execute(sandbox, {"shell": "sleep 1.5; echo other-survived"}, timeout_s=20)
        )
        killer = {"shell": f"kill -9 -1; kill -9 {os.getpid()}; kill -9 {host.pid}; echo tried"}
        result, sink = await execute(sandbox, killer)
        # In its pid namespace `kill -1` reaches only the run's own processes, and the server's
        # and the host process's pids name nothing there: the shell goes on and says so.
        assert result.succeeded, (result, sink.err)
        assert sink.out == "tried\n"
        other_result, other_sink = await other
        assert other_sink.out == "other-survived\n", other_result
        assert host.poll() is None
    finally:
        host.kill()
        host.wait()
    await assert_clean(sandbox, m)


# 15, 16 -------------------------------------------------------------------------------------------
async def test_15_privilege_probes_are_denied(sandbox: SandboxExecutor) -> None:
    src = """
        import ctypes, errno, fcntl, os, subprocess, termios
        libc = ctypes.CDLL(None, use_errno=True)
        def run(label, argv):
            p = subprocess.run(argv, capture_output=True)
            print(label, "rc", p.returncode)
        run("unshare", ["unshare", "-Ur", "true"])
        run("mount", ["mount", "-t", "tmpfs", "none", "/work"])
        run("su", ["su", "-c", "id"])
        r = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to pid 1
        print("ptrace", r, errno.errorcode.get(ctypes.get_errno()))
        try:
            fcntl.ioctl(1, termios.TIOCSTI, b"x")
            print("tiocsti ok")
        except OSError as e:
            print("tiocsti", errno.errorcode[e.errno])
        try:
            os.open("/dev/tty", os.O_RDWR)
            print("tty ok")
        except OSError as e:
            print("tty", errno.errorcode[e.errno])
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        print("CapEff", status["CapEff"].strip())
        print("NoNewPrivs", status["NoNewPrivs"].strip())
        print("uid", os.getuid(), os.getgid(), os.getgroups())
    """
    _result, sink = await execute(sandbox, py(src))
    out = dict(line.split(" ", 1) for line in sink.out.splitlines())
    assert out["unshare"] != "rc 0"
    assert out["mount"] != "rc 0"
    assert out["su"] != "rc 0"
    assert out["ptrace"].startswith("-1")
    assert out["tiocsti"] in ("EPERM", "ENOTTY")
    assert out["tty"] != "ok"
    assert out["CapEff"] == "0000000000000000"
    assert out["NoNewPrivs"] == "1"
    if ROOT:
        assert out["uid"] == f"{sandbox.uid} {sandbox.gid} []"
    await assert_clean(sandbox)


# 17 -----------------------------------------------------------------------------------------------
async def test_17_eight_concurrent_runs_with_a_bomb_and_a_hog(sandbox: SandboxExecutor) -> None:
    await need(sandbox, "pids")
    await need(sandbox, "memory")
    bomb = execute(sandbox, {"shell": ":(){ :|:& };:", "timeout_s": 3}, pids=64)
    hog = execute(sandbox, py("x = [bytearray(50 << 20) for _ in range(80)]"), memory_mb=128)
    normal = [
        execute(sandbox, py(f"import os; print(sum(range({n})), len(os.listdir('.')))"))
        for n in range(1000, 7000, 1000)
    ]
    results = await asyncio.gather(bomb, hog, *normal)
    (bomb_result, _), (hog_result, _) = results[:2]
    assert not bomb_result.succeeded
    assert hog_result.failure is not None
    assert hog_result.failure.kind is FailureKind.MEMORY_LIMIT
    for (res, sink), n in zip(results[2:], range(1000, 7000, 1000), strict=True):
        assert res.succeeded, res
        assert sink.out.split()[0] == str(sum(range(n)))
    await assert_clean(sandbox)


# 18 -----------------------------------------------------------------------------------------------
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> list[str]:
    me = str(os.getpid())
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2 :].split()[1] == me:
                kids.append(name)
    return kids


@pytest.mark.slow
async def test_18_three_hundred_back_to_back_runs_leak_nothing(sandbox: SandboxExecutor) -> None:
    await execute(sandbox, {"command": ["true"]})  # warm up (lazy imports, filter cache)
    await sandbox.settle()
    fds, kids = _fds(), _children()
    for i in range(300):
        result, sink = await execute(sandbox, {"command": ["echo", str(i)]})
        assert result.succeeded, (i, result)
        assert sink.out == f"{i}\n"
    await sandbox.settle()  # the descriptors of the last attempts close in the cleanup thread
    assert _fds() == fds
    assert _children() == kids
    assert cgroup_children(sandbox) == []
    await assert_clean(sandbox)


# 19 -----------------------------------------------------------------------------------------------
async def test_19_timeout_and_cancel_while_output_flows(sandbox: SandboxExecutor) -> None:
    flow = {"shell": "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done"}
    result, sink = await execute(sandbox, {**flow, "timeout_s": 0.5})
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    assert "line 0" in sink.out
    cancel, sink = asyncio.Event(), Sink()
    printed = sink.when_output(b"line 3\n")  # cancel while output flows
    task = asyncio.ensure_future(execute(sandbox, flow, cancel=cancel, sink=sink))
    await asyncio.wait_for(printed.wait(), 30)
    cancel.set()
    result, _ = await task
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CANCELLED
    assert "line 0" in sink.out
    await assert_clean(sandbox)


# 20 -----------------------------------------------------------------------------------------------
async def test_20_without_bwrap_default_and_strict_refuse_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcpexec.errors import SandboxUnavailable
    from mcpexec.executor.sandbox import SandboxConfig

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    for strict in (False, True):
        work = Path("/tmp/mcpexec-sandbox") if ROOT else tmp_path / "work"
        ex = SandboxExecutor(work, SandboxConfig(strict=strict))
        with pytest.raises(SandboxUnavailable, match="bwrap"):
            await ex.start()
        assert not ex.instance_dir.exists()
        assert pids_with_env(INSTANCE_VAR, ex.instance_id) == {}


# 21 -----------------------------------------------------------------------------------------------
async def test_21_path_tricks_are_validated_or_contained(sandbox: SandboxExecutor) -> None:
    from pydantic import ValidationError

    for bad in ({"../x": "a"}, {"/etc/x": "a"}, {"a//b": "a"}, {"a/../../b": "a"}):
        with pytest.raises(ValidationError):
            request({"command": ["true"], "inputs": bad})
    with pytest.raises(ValidationError):
        request({"command": ["echo", "a\0b"]})
    long_name = "d" * 200
    shell = "cd ..; cd ..; pwd; ls /; cat /work/sub_dir/in.txt"
    spec = {"shell": f"{shell}; mkdir -p /work/{long_name}", "inputs": {"sub_dir/in.txt": "inside"}}
    result, sink = await execute(sandbox, spec)
    assert result.succeeded, (result, sink.err)
    lines = sink.out.splitlines()
    assert lines[0] == "/"
    assert "work" in lines
    assert "root" not in lines
    assert "home" not in lines
    assert lines[-1] == "inside", sink.out
    await assert_clean(sandbox)


# 22 -----------------------------------------------------------------------------------------------
@layer(NOT_ROOT)  # plants stale cgroups, which needs root
async def test_22_stale_state_is_cleaned_at_startup(sandbox: SandboxExecutor) -> None:
    dead = f"{os.getpid()}-1-deadbeef"  # this pid with another start time: a dead server
    work = Path("/tmp/mcpexec-sandbox") / dead
    (work / "run.1").mkdir(parents=True)
    (work / "owner").write_text(f"{os.getpid()} 1\n")
    planted = [work]
    assert sandbox.limit_groups is not None
    for inst in sandbox.limit_groups.v1.values():
        stale = inst.parent / dead / "run.1"
        stale.mkdir(parents=True)
        planted.append(stale.parent)
    v2 = getattr(sandbox.mechanism, "instance", None)
    if isinstance(v2, Path):
        (v2.parent / dead / "run.1").mkdir(parents=True)
        planted.append(v2.parent / dead)
    fresh = SandboxExecutor(Path("/tmp/mcpexec-sandbox"), sandbox.config)
    await fresh.start()
    try:
        for path in planted:
            assert not path.exists(), path
        _result, sink = await execute(fresh, {"command": ["echo", "fresh"]})
        assert sink.out == "fresh\n"
    finally:
        await fresh.stop()
    await assert_clean(sandbox)


# the uid drop (notes §2) --------------------------------------------------------------------------
@layer(NOT_ROOT)  # the uid drop applies to a root server
async def test_root_server_runs_processes_as_the_sandbox_uid_without_groups(
    sandbox: SandboxExecutor,
) -> None:
    result, sink = await execute(sandbox, {"shell": "id -u; id -g; id -G; cat /etc/shadow"})
    assert sink.out.split() == [str(sandbox.uid), str(sandbox.gid), str(sandbox.gid)]
    assert result.isolation is not None
    assert f"uid={sandbox.uid}" in result.isolation
    await assert_clean(sandbox)
