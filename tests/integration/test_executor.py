"""SubprocessExecutor against real processes: capture, limits, tree kill, side channels, watchdog.

Every wait is bounded; the run-side sleeps only make processes live long enough to be killed.
Tests that depend on the tree-kill mechanism run in both modes: ``cgroup`` (skipped where no
writable cgroup2 mount exists, except under ``CI=true``, which has one) and the ``environ``
fallback.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from executor_helpers import (
    DEFAULT_LIMITS,
    SPAWN,
    RecordingSink,
    helper_processes,
    layer,
    spawn_mode_fixture,
)
from mcpexec.executor.base import EffectiveLimits, ExecRequest, ExecResult
from mcpexec.executor.cgroup import CGROUP_DIR, find_cgroup2_mount
from mcpexec.executor.output import HIGH_WATER, TAIL_BYTES, omitted_marker
from mcpexec.executor.subprocess import NOT_ENFORCED, SubprocessExecutor
from mcpexec.models import ExecSpec, FailureKind, InputFile, Progress, Stream

pytestmark = pytest.mark.timeout(30)
spawn_mode = spawn_mode_fixture()  # every test with the spawn helper and with the exec wrapper

PY = sys.executable
NO_CGROUP = None if find_cgroup2_mount() is not None else "no writable cgroup2 mount"
MODES = [
    pytest.param(True, id="cgroup", marks=layer(NO_CGROUP)),
    pytest.param(False, id="environ"),
]

# A double-forked, setsid'ed daemon that ignores SIGTERM/SIGHUP and keeps the run's stdout and
# stderr open. Its argv carries a marker so the test can look for survivors in /proc.
DAEMON = textwrap.dedent(
    """
    import os, signal, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            open("daemon.ready", "w").close()
            time.sleep(1000)
        os._exit(0)
    os.wait()
    deadline = time.monotonic() + 10
    while not os.path.exists("daemon.ready") and time.monotonic() < deadline:
        time.sleep(0.01)
    print("daemon started", flush=True)
    """
)


def limits_for(spec: ExecSpec, **overrides: Any) -> EffectiveLimits:
    base = dataclasses.replace(
        DEFAULT_LIMITS,
        timeout_s=spec.timeout_s or 20.0,
        cpu_s=spec.limits.cpu_s,
        kill_grace_s=0.5,
        max_output_bytes=spec.limits.max_output_bytes or DEFAULT_LIMITS.max_output_bytes,
    )
    return dataclasses.replace(base, **overrides)


@asynccontextmanager
async def started(tmp_path: Path, **kwargs: Any) -> AsyncIterator[SubprocessExecutor]:
    kwargs.setdefault("spawn_helper", SPAWN.helper)
    ex = SubprocessExecutor(tmp_path / "work", **kwargs)
    await ex.start()
    assert (ex.spawner is not None) == SPAWN.helper  # the helper started (no silent fallback)
    try:
        yield ex
    finally:
        await ex.stop()


async def execute(
    ex: SubprocessExecutor,
    spec: dict[str, Any],
    sink: RecordingSink | None = None,
    cancel: asyncio.Event | None = None,
    **limit_overrides: Any,
) -> tuple[ExecResult, RecordingSink]:
    sink = sink or RecordingSink()
    parsed = ExecSpec.model_validate(spec)
    request = ExecRequest("run-1", 1, parsed, limits_for(parsed, **limit_overrides))
    result = await ex.execute(request, sink, cancel or asyncio.Event())
    return result, sink


def run_one(
    tmp_path: Path, spec: dict[str, Any], **kwargs: Any
) -> tuple[ExecResult, RecordingSink]:
    async def main() -> tuple[ExecResult, RecordingSink]:
        async with started(tmp_path, use_cgroups=kwargs.pop("use_cgroups", None)) as ex:
            return await execute(ex, spec, **kwargs)

    return asyncio.run(main())


def survivors(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    needle = marker.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                found.append(int(name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def daemon_spec(marker: str, then: str = "", **extra: Any) -> dict[str, Any]:
    shell = f"{PY} daemon.py {marker}"
    return {
        "shell": f"{shell}{'; ' + then if then else ''}",
        "inputs": {"daemon.py": DAEMON},
        **extra,
    }


# --- basics ------------------------------------------------------------------------------------


def test_echo_is_captured(tmp_path: Path) -> None:
    result, sink = run_one(tmp_path, {"command": ["echo", "hello", "world"]})
    assert result.succeeded
    assert result.exit_code == 0
    assert result.failure is None
    assert sink.text() == "hello world\n"
    assert result.duration_s > 0


def test_stderr_and_exit_code(tmp_path: Path) -> None:
    result, sink = run_one(tmp_path, {"shell": "echo out; echo err >&2; exit 3"})
    assert not result.succeeded
    assert result.exit_code == 3
    assert result.signal is None
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXIT_CODE
    assert sink.text() == "out\n"
    assert sink.text(Stream.STDERR) == "err\n"


def test_killed_by_signal(tmp_path: Path) -> None:
    result, _ = run_one(tmp_path, {"command": [PY, "-c", "import os; os.kill(os.getpid(), 6)"]})
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SIGNAL
    assert result.signal == signal.SIGABRT
    assert result.exit_code is None


def test_command_is_never_a_shell(tmp_path: Path) -> None:
    result, sink = run_one(tmp_path, {"command": ["echo", "$HOME; rm -rf /"]})
    assert result.succeeded
    assert sink.text() == "$HOME; rm -rf /\n"


def test_spawn_error_for_missing_command(tmp_path: Path) -> None:
    result, _ = run_one(tmp_path, {"command": ["no-such-command-xyz", "arg"]})
    assert not result.succeeded
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SPAWN_ERROR
    assert "command not found: no-such-command-xyz" in result.failure.message
    assert "PATH=" in result.failure.message


def test_spawn_error_for_non_executable_file(tmp_path: Path) -> None:
    result, _ = run_one(tmp_path, {"command": ["./tool"], "inputs": {"tool": "echo hi\n"}})
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SPAWN_ERROR
    assert "Permission denied" in result.failure.message


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result, sink = run_one(tmp_path, {"shell": "cat; echo eof"})
    assert result.succeeded
    assert sink.text() == "eof\n"


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "import sys\nprint('from python', sys.version_info[0])\n"),
        ("sh", "echo from sh\n"),
        ("bash", "arr=(from bash); echo ${arr[@]}\n"),
        ("node", "console.log('from node')\n"),
    ],
)
def test_script_kinds(tmp_path: Path, language: str, source: str) -> None:
    path = "/usr/local/bin:/usr/bin:/bin"
    interpreter = {"python": "python3", "node": "node"}.get(language, language)
    if shutil.which(interpreter, path=path) is None:
        pytest.skip(f"{interpreter} not installed")

    async def main() -> tuple[ExecResult, RecordingSink]:
        async with started(tmp_path, run_path=path) as ex:
            return await execute(ex, {"script": {"language": language, "source": source}})

    result, sink = asyncio.run(main())
    assert result.succeeded, (result, sink.text(Stream.STDERR))
    assert sink.text().startswith(f"from {language}")


def test_missing_interpreter_is_a_spawn_error(tmp_path: Path) -> None:
    async def main() -> ExecResult:
        async with started(tmp_path, run_path=str(tmp_path / "empty")) as ex:
            return (await execute(ex, {"script": {"language": "python", "source": "pass"}}))[0]

    result = asyncio.run(main())
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SPAWN_ERROR
    assert "interpreter not found: python3" in result.failure.message


def test_inputs_are_written(tmp_path: Path) -> None:
    blob = bytes(range(256))
    spec = {
        "shell": "cat notes.txt; od -An -tx1 data/blob.bin | tr -d ' \\n' | head -c 16; echo",
        "inputs": {
            "notes.txt": "plain text\n",
            "data/blob.bin": InputFile(content=base64.b64encode(blob).decode(), base64=True),
        },
    }
    result, sink = run_one(tmp_path, spec)
    assert result.succeeded, sink.text(Stream.STDERR)
    assert sink.text() == "plain text\n0001020304050607\n"


def test_environment_is_an_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPEXEC_TEST_SECRET", "canary-value")
    result, sink = run_one(tmp_path, {"command": ["env"], "env": {"GREETING": "hi there"}})
    assert result.succeeded
    env = dict(line.split("=", 1) for line in sink.text().splitlines())
    assert "MCPEXEC_TEST_SECRET" not in env
    assert "canary-value" not in sink.text()
    assert env["GREETING"] == "hi there"
    assert env["MCPEXEC_RUN_ID"] == "run-1"
    assert env["MCPEXEC_ATTEMPT"] == "1"
    assert env["TMPDIR"].startswith(env["HOME"])
    assert env["MCPEXEC_OUTPUT_DIR"].startswith(env["HOME"])
    assert env["LANG"]
    allowed = {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "GREETING"}
    assert {k for k in env if not k.startswith("MCPEXEC_")} <= allowed


def test_workdir_is_private_and_removed(tmp_path: Path) -> None:
    async def main() -> tuple[ExecResult, RecordingSink, SubprocessExecutor]:
        async with started(tmp_path) as ex:
            result, sink = await execute(ex, {"shell": "pwd; stat -c %a .; echo x > left.txt"})
            await ex.settle()  # removed off the event loop, by the cleanup thread
            assert list(ex.instance_dir.iterdir()) == [ex.instance_dir / "owner"]
            return result, sink, ex

    result, sink, ex = asyncio.run(main())
    cwd, mode = sink.text().split()
    assert result.succeeded
    assert Path(cwd).parent == ex.instance_dir
    assert mode == "700"
    assert not ex.instance_dir.exists()


def test_keep_workdirs(tmp_path: Path) -> None:
    async def main() -> Path:
        async with started(tmp_path, keep_workdirs=True) as ex:
            _, sink = await execute(ex, {"shell": "pwd; echo kept > left.txt"})
            return Path(sink.text().strip())

    workdir = asyncio.run(main())
    assert (workdir / "left.txt").read_text() == "kept\n"


# --- deadlines, cancellation and the process tree -----------------------------------------------


@pytest.mark.parametrize("use_cgroups", MODES)
def test_timeout_kills_sleep_and_setsid_daemon(tmp_path: Path, use_cgroups: bool) -> None:
    marker = f"mcpx-{secrets.token_hex(6)}"
    spec = daemon_spec(marker, then=f"exec {PY} -c 'import time; time.sleep(100)' {marker}")
    spec["timeout_s"] = 2.0
    result, sink = run_one(tmp_path, spec, use_cgroups=use_cgroups)
    assert "daemon started" in sink.text(), sink.text(Stream.STDERR)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    assert result.failure.message == "timed out after 2 s"
    assert survivors(marker) == []


@pytest.mark.parametrize("use_cgroups", MODES)
def test_cancel_kills_the_tree(tmp_path: Path, use_cgroups: bool) -> None:
    marker = f"mcpx-{secrets.token_hex(6)}"

    async def main() -> tuple[ExecResult, RecordingSink]:
        async with started(tmp_path, use_cgroups=use_cgroups) as ex:
            sink, cancel = RecordingSink(), asyncio.Event()
            ready = sink.when_output(b"daemon started")
            job = asyncio.create_task(
                execute(ex, daemon_spec(marker, then="sleep 100"), sink, cancel)
            )
            await asyncio.wait_for(ready.wait(), 10)
            cancel.set()
            return await asyncio.wait_for(job, 10)

    result, _ = asyncio.run(main())
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CANCELLED
    assert survivors(marker) == []


@pytest.mark.parametrize("use_cgroups", MODES)
def test_cancelling_the_coroutine_kills_the_tree(tmp_path: Path, use_cgroups: bool) -> None:
    marker = f"mcpx-{secrets.token_hex(6)}"

    async def main() -> None:
        async with started(tmp_path, use_cgroups=use_cgroups) as ex:
            sink = RecordingSink()
            ready = sink.when_output(b"daemon started")
            job = asyncio.create_task(execute(ex, daemon_spec(marker, then="sleep 100"), sink))
            await asyncio.wait_for(ready.wait(), 10)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            # cgroup.kill / SIGKILL were sent before CancelledError propagated.
            assert wait_until(lambda: not survivors(marker), 2.0)

    asyncio.run(main())
    assert survivors(marker) == []


@pytest.mark.parametrize("use_cgroups", MODES)
def test_background_daemon_killed_when_main_exits(tmp_path: Path, use_cgroups: bool) -> None:
    # The daemon holds stdout: a naive runner waits for EOF forever.
    marker = f"mcpx-{secrets.token_hex(6)}"
    result, sink = run_one(
        tmp_path, daemon_spec(marker, then="echo main done"), use_cgroups=use_cgroups
    )
    assert result.succeeded, sink.text(Stream.STDERR)
    assert sink.text() == "daemon started\nmain done\n"
    assert survivors(marker) == []


@pytest.mark.parametrize("use_cgroups", MODES)
def test_immediate_timeouts_leave_nothing(tmp_path: Path, use_cgroups: bool) -> None:
    # A deadline that fires while the child is still being set up (before or just after exec)
    # must kill it as surely as a late one.
    marker = f"mcpx-{secrets.token_hex(6)}"
    spec = daemon_spec(marker, then="sleep 100", timeout_s=0.001)

    async def main() -> list[ExecResult]:
        async with started(tmp_path, use_cgroups=use_cgroups) as ex:
            return [(await execute(ex, spec, kill_grace_s=0.05))[0] for _ in range(15)]

    results = asyncio.run(main())
    assert all(r.failure is not None and r.failure.kind is FailureKind.TIMEOUT for r in results)
    assert survivors(marker) == []


ESCAPEE = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        # A fresh environment: the environ sweep can no longer recognise this process.
        argv = [sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]]
        os.execve(sys.executable, argv, {})
    time.sleep(0.3)
    print("escaped", flush=True)
    """
)


def test_environ_mode_escapee_holding_stdout_does_not_hang(tmp_path: Path) -> None:
    # The documented limit of the fallback: a daemon that leaves the session and scrubs its
    # environment survives. The run must still end, after a bounded drain, and say why.
    marker = f"mcpx-{secrets.token_hex(6)}"
    spec = {"shell": f"{PY} escapee.py {marker}", "inputs": {"escapee.py": ESCAPEE}}
    try:
        result, sink = run_one(tmp_path, spec, use_cgroups=False)
        assert result.succeeded
        assert sink.text() == "escaped\n"
        assert any("pipes still held open" in note for note in result.notes)
    finally:
        for pid in survivors(marker):
            os.kill(pid, signal.SIGKILL)


@layer(NO_CGROUP)
def test_cgroup_mode_catches_the_escapee(tmp_path: Path) -> None:
    marker = f"mcpx-{secrets.token_hex(6)}"
    spec = {"shell": f"{PY} escapee.py {marker}", "inputs": {"escapee.py": ESCAPEE}}
    result, _ = run_one(tmp_path, spec, use_cgroups=True)
    assert result.succeeded
    assert result.notes == []
    assert survivors(marker) == []


def test_cpu_limit_is_not_a_timeout(tmp_path: Path) -> None:
    spec = {"command": [PY, "-c", "while True: pass"], "limits": {"cpu_s": 1}, "timeout_s": 15}
    result, _ = run_one(tmp_path, spec)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CPU_LIMIT, result
    assert result.failure.message == "CPU time limit of 1 s exceeded"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_output_flood_is_capped_with_bounded_memory(tmp_path: Path) -> None:
    cap = 1 << 20
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    spec = {
        "shell": "head -c 200000000 /dev/zero; echo done >&2",
        "limits": {"max_output_bytes": cap},
    }
    sink = RecordingSink(keep=TAIL_BYTES + 1024)

    async def main() -> ExecResult:
        async with started(tmp_path) as ex:
            return (await execute(ex, spec, sink))[0]

    result = asyncio.run(main())
    rss_growth = proc.memory_info().rss - rss_before
    assert result.succeeded
    assert result.output_truncated
    marker = omitted_marker(200_000_000 - cap - TAIL_BYTES)
    assert sink.total[Stream.STDOUT] == cap + len(marker) + TAIL_BYTES
    assert marker in sink.data[Stream.STDOUT]
    assert sink.text(Stream.STDERR) == "done\n"
    assert sink.writes < 200  # batched, not one write per pipe read
    assert rss_growth < 50 * 1024 * 1024, rss_growth


class SlowSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__(keep=1024)
        self.largest = 0

    async def output(self, stream: Stream, data: bytes) -> None:
        self.largest = max(self.largest, len(data))
        await asyncio.sleep(0.005)  # a slow store
        await super().output(stream, data)


def test_slow_sink_applies_backpressure(tmp_path: Path) -> None:
    size = 40 * 1024 * 1024
    spec = {"shell": f"head -c {size} /dev/zero", "limits": {"max_output_bytes": 1 << 30}}
    sink = SlowSink()

    async def main() -> ExecResult:
        async with started(tmp_path) as ex:
            return (await execute(ex, spec, sink))[0]

    result = asyncio.run(main())
    assert result.succeeded
    assert not result.output_truncated
    assert sink.total[Stream.STDOUT] == size
    # Unflushed bytes stay near the high-water mark (1 MiB) instead of piling up.
    assert sink.largest <= HIGH_WATER + 2 * 256 * 1024


def test_small_writes_are_batched(tmp_path: Path) -> None:
    spec = {"command": [PY, "-c", "import sys\nfor i in range(5000): print(i, flush=True)"]}
    result, sink = run_one(tmp_path, spec)
    assert result.succeeded
    assert sink.text().splitlines() == [str(i) for i in range(5000)]
    assert sink.writes < 100


# --- side channels: progress, result, artifacts ---------------------------------------------------


def test_progress_is_reported(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        import json, os, time
        path = os.environ["MCPEXEC_PROGRESS"]
        def report(line):
            with open(path, "a") as f:
                f.write(line + "\\n")
        report(json.dumps({"progress": 0.5, "message": "half"}))
        time.sleep(0.6)  # several tailer ticks: the middle value must be seen live
        report("not json")
        report(json.dumps({"progress": 7}))
        report(json.dumps({"progress": 1.0, "message": "done"}))
        report("{broken")
        """
    )
    result, sink = run_one(tmp_path, {"command": [PY, "-c", source]})
    assert result.succeeded, sink.text(Stream.STDERR)
    assert Progress(value=0.5, message="half") in sink.progress_seen
    assert sink.progress_seen[-1] == Progress(value=1.0, message="done")


def test_result_file(tmp_path: Path) -> None:
    source = (
        "import json, os\n"
        'json.dump({"answer": 42, "items": [1, 2]}, open(os.environ["MCPEXEC_RESULT"], "w"))'
    )
    result, _ = run_one(tmp_path, {"command": [PY, "-c", source]})
    assert result.succeeded
    assert result.result == {"answer": 42, "items": [1, 2]}


def test_invalid_result_is_noted_not_failed(tmp_path: Path) -> None:
    result, _ = run_one(tmp_path, {"shell": 'echo "{nope" > "$MCPEXEC_RESULT"'})
    assert result.succeeded
    assert result.result is None
    assert any("not valid JSON" in note for note in result.notes)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_result_with_a_number_json_lacks_is_noted(tmp_path: Path, constant: str) -> None:
    # Python's json.dumps writes them by default; JSON has none (and MCP would carry it on).
    shell = f'echo \'{{"x": [1, {constant}]}}\' > "$MCPEXEC_RESULT"'
    result, _ = run_one(tmp_path, {"shell": shell})
    assert result.succeeded
    assert result.result is None
    assert any(f"{constant} is not a JSON number" in note for note in result.notes), result.notes


def test_result_symlink_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary.json"
    canary.write_text('"secret"')
    result, _ = run_one(tmp_path, {"shell": f'ln -s {canary} "$MCPEXEC_RESULT"'})
    assert result.result is None
    assert any("result file refused" in note for note in result.notes)


def test_artifacts_collected_and_unsafe_entries_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-SECRET")
    shell = f"""
        cd "$MCPEXEC_OUTPUT_DIR"
        echo report > report.txt
        mkdir -p sub/deeper && printf 'bin' > sub/deeper/data.bin
        ln -s {canary} leak.txt
        ln -s {tmp_path} linkdir
        mkfifo pipe
    """
    result, sink = run_one(tmp_path, {"shell": shell})
    assert result.succeeded, sink.text(Stream.STDERR)
    assert sink.artifacts == {"report.txt": b"report\n", "sub/deeper/data.bin": b"bin"}
    assert result.artifacts == ["report.txt", "sub/deeper/data.bin"]
    assert set(result.refused_artifacts) == {"leak.txt", "linkdir", "pipe"}
    assert all(b"CANARY" not in data for data in sink.artifacts.values())


def test_artifact_caps(tmp_path: Path) -> None:
    shell = """
        cd "$MCPEXEC_OUTPUT_DIR"
        head -c 1000 /dev/zero > f1; head -c 1000 /dev/zero > f2; head -c 2000 /dev/zero > f3
        echo small > f4; echo small > f5
    """
    result, sink = run_one(tmp_path, {"shell": shell}, max_artifacts=3, max_artifact_bytes=2500)
    assert result.artifacts == ["f1", "f2", "f4"]
    assert sorted(sink.artifacts) == ["f1", "f2", "f4"]
    assert result.refused_artifacts == ["f3", "f5"]
    assert any("f3" in note and "exceed 2500 bytes" in note for note in result.notes)
    assert any("f5" in note and "more than 3 artifacts" in note for note in result.notes)


# --- executor lifecycle: stale state, watchdog ----------------------------------------------------


def test_start_removes_stale_workdirs_and_cgroups(tmp_path: Path) -> None:
    work = tmp_path / "work"
    dead_owner = f"{os.getpid()} 1"  # our pid with a start time that is not ours: a dead server
    stale = work / f"{os.getpid()}-1-deadbeef"
    (stale / "run.1").mkdir(parents=True)
    (stale / "owner").write_text(dead_owner)
    unrelated = work / "not-an-instance"
    unrelated.mkdir()
    mount = find_cgroup2_mount()
    stale_cgroup = None
    if mount is not None:
        stale_cgroup = mount / CGROUP_DIR / f"{os.getpid()}-1-deadbeef"
        (stale_cgroup / "run.1").mkdir(parents=True)

    async def main() -> list[str]:
        async with started(tmp_path) as ex:
            return ex.stale_removed

    removed = asyncio.run(main())
    assert str(stale) in removed
    assert not stale.exists()
    assert unrelated.exists()
    if stale_cgroup is not None:
        assert not stale_cgroup.exists()


WATCHDOG_HARNESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from mcpexec.executor.base import EffectiveLimits, ExecRequest
    from mcpexec.executor.subprocess import SubprocessExecutor
    from mcpexec.models import ExecSpec

    class Sink:
        async def output(self, stream, data): pass
        async def progress(self, progress): pass
        async def artifact(self, name, file, size): pass

    async def main(work, marker, use_cgroups, daemon, helper):
        ex = SubprocessExecutor(
            Path(work), use_cgroups=use_cgroups == "cgroup", spawn_helper=helper == "1"
        )
        await ex.start()
        assert (ex.spawner is not None) == (helper == "1")
        print(ex.isolation, flush=True)
        spec = ExecSpec(
            shell=f"{sys.executable} daemon.py {marker}; "
            f"exec {sys.executable} -c 'import time; time.sleep(1000)' {marker}",
            inputs={"daemon.py": daemon},
        )
        limits = EffectiveLimits(3600.0, None, None, 1024, 1024, 1 << 20)
        await ex.execute(ExecRequest("wd", 1, spec, limits), Sink(), asyncio.Event())

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("use_cgroups", MODES)
def test_watchdog_kills_the_runs_of_a_killed_server(tmp_path: Path, use_cgroups: bool) -> None:
    marker = f"mcpx-{secrets.token_hex(6)}"
    mode = "cgroup" if use_cgroups else "environ"
    helper = "1" if SPAWN.helper else "0"
    server = subprocess.Popen(
        [PY, "-c", WATCHDOG_HARNESS, str(tmp_path / "work"), marker, mode, DAEMON, helper],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"process+{mode}"
        # The daemon (python daemon.py MARKER) and `sleep 1000 MARKER` both carry the marker.
        assert wait_until(lambda: len(survivors(marker)) >= 2, 10), survivors(marker)
        assert bool(helper_processes(server.pid)) == SPAWN.helper
        server.kill()
        server.wait(5)
        assert wait_until(lambda: not survivors(marker), 10), survivors(marker)
        assert wait_until(lambda: not helper_processes(server.pid), 10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
        if server.stdout is not None:
            server.stdout.close()  # else a ResourceWarning (warnings are errors)
        for pid in survivors(marker):
            os.kill(pid, signal.SIGKILL)


def test_auto_mode_falls_back_without_cgroup2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mcpexec.executor.cgroup.CGROUP_CANDIDATES", ())

    async def main() -> str:
        async with started(tmp_path) as ex:
            return ex.isolation

    assert asyncio.run(main()) == "process+environ"
    with pytest.raises(RuntimeError, match="cgroup tree kill unavailable"):
        asyncio.run(SubprocessExecutor(tmp_path / "w2", use_cgroups=True).start())


@layer(NO_CGROUP)
def test_auto_mode_uses_cgroups_when_available(tmp_path: Path) -> None:
    async def main() -> str:
        async with started(tmp_path) as ex:
            return ex.isolation

    assert asyncio.run(main()) == "process+cgroup"


def test_stop_ends_the_watchdog(tmp_path: Path) -> None:
    async def main() -> int:
        async with started(tmp_path) as ex:
            assert ex._watchdog is not None
            proc = ex._watchdog.proc
        assert proc.poll() is not None
        return proc.pid

    pid = asyncio.run(main())
    assert (
        not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def test_plain_executor_records_pids_and_disk_as_not_enforced(tmp_path: Path) -> None:
    # Sandbox `none` has no per-run process count or workdir size limit: the attempt says so.
    result, _ = run_one(tmp_path, {"command": ["true"]}, pids=64, disk_mb=10, memory_mb=512)
    assert result.succeeded
    assert result.limits is not None
    assert result.limits["pids"] == 64
    assert result.limits["pids_by"] == NOT_ENFORCED == "not enforced (sandbox none)"
    assert result.limits["disk_mb"] == 10
    assert result.limits["disk_by"] == NOT_ENFORCED
    assert result.limits["memory_by"] == "rlimit-as"
    result, _ = run_one(tmp_path / "2", {"command": ["true"]})
    assert result.limits is not None
    assert "pids_by" not in result.limits
    assert "disk_by" not in result.limits


# --- the spawn helper --------------------------------------------------------------------------


@pytest.mark.parametrize("use_cgroups", MODES)
def test_a_dead_spawn_helper_ends_its_runs_and_the_wrapper_takes_over(
    tmp_path: Path, use_cgroups: bool
) -> None:
    """The helper killed mid-run: its child dies with it (PDEATHSIG), the attempt ends as killed
    with nothing left of its tree, and the next attempt is spawned by the exec wrapper."""
    if not SPAWN.helper:
        pytest.skip("the spawn helper's own failure")
    marker = f"mcpx-{secrets.token_hex(6)}"

    async def main() -> tuple[ExecResult, ExecResult, RecordingSink]:
        async with started(tmp_path, use_cgroups=use_cgroups) as ex:
            assert ex.spawner is not None
            assert ex.spawner.proc is not None
            sink = RecordingSink()
            ready = sink.when_output(b"daemon started")
            job = asyncio.create_task(execute(ex, daemon_spec(marker, then="sleep 100"), sink))
            await asyncio.wait_for(ready.wait(), 10)
            ex.spawner.proc.kill()
            killed, _ = await asyncio.wait_for(job, 10)
            assert not ex.spawner.alive
            after, after_sink = await execute(ex, {"command": ["echo", "after"]})
            return killed, after, after_sink

    killed, after, after_sink = asyncio.run(main())
    assert killed.failure is not None
    assert killed.failure.kind is FailureKind.SIGNAL, killed
    assert survivors(marker) == []
    assert after.succeeded, after
    assert after_sink.text() == "after\n"


def test_the_spawn_helpers_child_starts_clean(tmp_path: Path) -> None:
    """What the run's process inherits is what the exec wrapper gives it: default signal
    dispositions (Python ignores SIGPIPE), stdin /dev/null, only 0-2 open, its own session."""
    script = (
        "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd | sort -n | tr '\\n' ' '; "
        "echo; ps -o sid= -p $$; echo $$; readlink /proc/self/fd/0"
    )
    result, sink = run_one(tmp_path, {"shell": script})
    assert result.succeeded, result
    blk, ign, fds, sid, pid, stdin = sink.text().splitlines()
    assert ign.split() == ["SigIgn:", "0000000000000000"]
    assert blk.split() == ["SigBlk:", "0000000000000000"]
    assert fds.split()[:3] == ["0", "1", "2"]
    assert len(fds.split()) == 4
    assert sid.strip() == pid
    assert stdin == "/dev/null"


def test_the_spawn_helper_loads_no_more_than_it_needs() -> None:
    """The helper is forked once per run: every page it has costs the child a page fault before
    its exec. ``ctypes.util.find_library`` (``ldconfig -p`` through ``subprocess``) left it 4 MB
    larger and each run's first process 0.2-0.4 ms more CPU (docs/benchmarks.md, 2026-12-07)."""
    import mcpexec.executor.spawn_helper as helper

    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='spawn_helper'); "
        "print(sorted(m for m in ('subprocess', 'ctypes.util', 'shutil') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, helper.__file__],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert loaded.stdout.strip() == "[]", loaded


def test_the_spawn_helper_ignores_signals_meant_for_the_server(tmp_path: Path) -> None:
    """SIGTERM/SIGINT/SIGHUP (a client closing ``mcpexec mcp`` signals its process group) do
    not end the helper, nor the runs it spawned: the server decides when runs end."""
    if not SPAWN.helper:
        pytest.skip("the spawn helper's own signals")

    async def main() -> tuple[ExecResult, RecordingSink, bool]:
        async with started(tmp_path) as ex:
            assert ex.spawner is not None
            assert ex.spawner.proc is not None
            sink = RecordingSink()
            ready = sink.when_output(b"started")
            spec = {"shell": "echo started; sleep 0.5; echo finished"}
            job = asyncio.create_task(execute(ex, spec, sink))
            await asyncio.wait_for(ready.wait(), 10)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                ex.spawner.proc.send_signal(sig)
            result, _ = await asyncio.wait_for(job, 10)
            return result, sink, ex.spawner.alive and ex.spawner.proc.poll() is None

    result, sink, alive = asyncio.run(main())
    assert result.succeeded, result
    assert sink.text() == "started\nfinished\n"
    assert alive
