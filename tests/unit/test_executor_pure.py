"""The executor's pure pieces, without spawning anything: outcome classification, the command and
environment of a run, the rlimits, the exec wrapper, the bwrap command line, the cgroup plan."""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from executor_helpers import DEFAULT_LIMITS, require
from mcpexec.executor import bwrap
from mcpexec.executor.base import EffectiveLimits
from mcpexec.executor.cgroup import CgroupJoin, LimitSupport, limit_plan
from mcpexec.executor.command import CommandError, RunEnvironment, command_for
from mcpexec.executor.limits import exec_wrapper, rlimits_for
from mcpexec.executor.outcome import classify
from mcpexec.models import ExecSpec, Failure, FailureKind

MIB = 1024 * 1024
LIMITS = replace(DEFAULT_LIMITS, file_size_mb=8, open_files=64)


# --- classify ----------------------------------------------------------------------------------


def _classify(
    returncode: int,
    reason: FailureKind | None = None,
    *,
    timeout_s: float = 5.0,
    cpu_limit_s: int | None = None,
    cpu_used_s: float | None = None,
    duration_s: float = 1.0,
) -> tuple[int | None, int | None, Failure | None]:
    return classify(
        returncode,
        reason,
        timeout_s=timeout_s,
        cpu_limit_s=cpu_limit_s,
        cpu_used_s=cpu_used_s,
        duration_s=duration_s,
    )


def test_classify_success_exit_code_and_signal() -> None:
    assert _classify(0) == (0, None, None)
    code, sig, failure = _classify(3)
    assert (code, sig) == (3, None)
    assert failure is not None
    assert failure.kind is FailureKind.EXIT_CODE
    assert failure.message == "exited with code 3"
    code, sig, failure = _classify(-signal.SIGSEGV)
    assert (code, sig) == (None, signal.SIGSEGV)
    assert failure is not None
    assert failure.kind is FailureKind.SIGNAL
    assert failure.message == "killed by SIGSEGV"


def test_classify_our_own_stops_win_over_the_exit_status() -> None:
    _, sig, failure = _classify(-signal.SIGTERM, FailureKind.TIMEOUT, timeout_s=2.5)
    assert sig == signal.SIGTERM
    assert failure is not None
    assert failure.kind is FailureKind.TIMEOUT
    assert failure.message == "timed out after 2.5 s"
    # Even a clean exit during the grace period is the cancellation it was.
    _, _, failure = _classify(0, FailureKind.CANCELLED)
    assert failure is not None
    assert failure.kind is FailureKind.CANCELLED


@pytest.mark.parametrize(
    ("returncode", "used", "kind"),
    [
        (-signal.SIGXCPU, None, FailureKind.CPU_LIMIT),  # the soft limit
        (128 + signal.SIGXCPU, None, FailureKind.CPU_LIMIT),  # ... reported by a shell
        (-signal.SIGKILL, 2.0, FailureKind.CPU_LIMIT),  # the hard limit, with the CPU to show
        (-signal.SIGKILL, 0.5, FailureKind.SIGNAL),  # a SIGKILL from elsewhere
        (1, None, FailureKind.EXIT_CODE),
    ],
)
def test_classify_cpu_limit_needs_evidence(
    returncode: int, used: float | None, kind: FailureKind
) -> None:
    _, _, failure = _classify(returncode, cpu_limit_s=2, cpu_used_s=used, duration_s=0.1)
    assert failure is not None
    assert failure.kind is kind


def test_classify_cpu_limit_falls_back_to_wall_time() -> None:
    _, _, failure = _classify(-signal.SIGKILL, cpu_limit_s=2, duration_s=3.0)
    assert failure is not None
    assert failure.kind is FailureKind.CPU_LIMIT
    assert failure.message == "CPU time limit of 2 s exceeded"


def test_classify_unknown_signal_number() -> None:
    _, _, failure = _classify(-200)
    assert failure is not None
    assert failure.message == "killed by signal 200"


# --- the command and environment -----------------------------------------------------------------


def test_command_argv_for_each_kind(tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    home = Path("/work")
    cmd = command_for(ExecSpec(command=["echo", "hi"]), path=path, cwd=tmp_path, home=home)
    assert cmd.argv == ["echo", "hi"]
    assert os.path.basename(cmd.executable) == "echo"
    assert cmd.script is None
    cmd = command_for(ExecSpec(shell="echo $HOME"), path=path, cwd=tmp_path, home=home)
    assert (cmd.argv, cmd.executable) == (["/bin/sh", "-c", "echo $HOME"], "/bin/sh")
    spec = ExecSpec.model_validate({"script": {"language": "sh", "source": "echo s"}})
    cmd = command_for(spec, path=path, cwd=tmp_path, home=home)
    assert cmd.argv == ["sh", "/work/.mcpexec/script.sh"]  # the path as the run sees it
    assert cmd.script == (".mcpexec/script.sh", b"echo s")
    assert os.path.basename(cmd.executable) == "sh"


def test_command_relative_to_the_workdir_and_refusals(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o644)
    spec = ExecSpec(command=["./tool"])
    with pytest.raises(CommandError, match="Permission denied"):
        command_for(spec, path="/usr/bin", cwd=tmp_path, home=tmp_path)
    tool.chmod(0o755)
    assert command_for(spec, path="/usr/bin", cwd=tmp_path, home=tmp_path).executable == str(
        tmp_path / "./tool"
    )
    with pytest.raises(CommandError, match=r"command not found: nope \(PATH=/empty\)"):
        command_for(ExecSpec(command=["nope"]), path="/empty", cwd=tmp_path, home=tmp_path)
    spec = ExecSpec.model_validate({"script": {"language": "python", "source": "pass"}})
    with pytest.raises(CommandError, match="interpreter not found: python3 for python"):
        command_for(spec, path=str(tmp_path), cwd=tmp_path, home=tmp_path)


def test_run_environment_is_an_allowlist_placed_at_the_workdir() -> None:
    spec = ExecSpec(command=["true"], env={"HOME": "/mine", "A": "1"}, secrets=["TOKEN"])
    host = {"PATH": "/host/bin", "LANG": "", "TZ": "UTC", "AWS_SECRET": "x"}
    env = RunEnvironment.of(
        spec,
        run_id="r1",
        attempt=2,
        run_path=None,
        secrets={"TOKEN": "tok-value", "OTHER": "other-value"},
        token="t0k",
        instance_id="1-2-ab",
        host=host,
    )
    assert "tok-value" not in repr(env)
    built = env.build(Path("/work"), "/tmp")
    assert built == {
        "PATH": "/host/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "HOME": "/mine",  # the spec may set it
        "TMPDIR": "/tmp",
        "A": "1",
        "TOKEN": "tok-value",
        "MCPEXEC_RUN_ID": "r1",
        "MCPEXEC_ATTEMPT": "2",
        "MCPEXEC_OUTPUT_DIR": "/work/output",
        "MCPEXEC_PROGRESS": "/work/.mcpexec/progress.jsonl",
        "MCPEXEC_RESULT": "/work/.mcpexec/result.json",
        "MCPEXEC_RUN_TOKEN": "t0k",
        "MCPEXEC_INSTANCE": "1-2-ab",
    }
    plain = RunEnvironment.of(
        ExecSpec(command=["true"]),
        run_id="r",
        attempt=1,
        run_path="/p",
        secrets={},
        token="t",
        instance_id="i",
    ).build(Path("/w"))
    assert plain["PATH"] == "/p"
    assert plain["HOME"] == "/w"
    assert plain["TMPDIR"] == "/w/tmp"


# --- rlimits and the exec wrapper ---------------------------------------------------------------


def _names(rlimits: list[tuple[int, int, int]]) -> dict[int, tuple[int, int]]:
    return {res: (soft, hard) for res, soft, hard in rlimits}


def test_rlimits_for() -> None:
    got = _names(rlimits_for(LIMITS))
    assert got[resource.RLIMIT_CORE] == (0, 0)
    assert got[resource.RLIMIT_FSIZE] == (8 * MIB, 8 * MIB)
    assert got[resource.RLIMIT_NOFILE][0] <= 64
    assert resource.RLIMIT_CPU not in got
    assert resource.RLIMIT_AS not in got
    assert resource.RLIMIT_NPROC not in got
    lim = EffectiveLimits(60.0, 3, 256, 8, 64, 1 << 20)
    got = _names(rlimits_for(lim, nproc=1024))
    assert got[resource.RLIMIT_CPU] == (3, 4)  # SIGXCPU first, SIGKILL a second later
    assert got[resource.RLIMIT_AS] == (256 * MIB, 256 * MIB)
    assert got[resource.RLIMIT_NPROC][0] <= 1024
    # A memory cgroup enforces memory_mb: no RLIMIT_AS then.
    assert resource.RLIMIT_AS not in _names(rlimits_for(lim, address_space=False))


def test_exec_wrapper_joins_limits_and_drops(tmp_path: Path) -> None:
    rlimits = [(resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NOFILE, 64, 64)]
    procs = [tmp_path / "a b" / "cgroup.procs", tmp_path / "v1" / "cgroup.procs"]
    argv = exec_wrapper(rlimits, procs, drop_to=(65534, 65533))
    if argv is None:
        require("prlimit/setpriv (util-linux) not installed")
    assert argv is not None
    assert argv[:2] == ["/bin/sh", "-c"]
    alive = f'read -r _ _ _ ppid _ < /proc/self/stat && [ "$ppid" = {os.getpid()} ]'
    joins = f"echo 0 > '{procs[0]}' && echo 0 > {procs[1]}"
    assert argv[2] == f'{joins} && {alive} && unset PWD && exec "$@"'
    assert argv[3] == "mcpexec-spawn"
    rest = argv[4:]
    assert os.path.basename(rest[0]) == "prlimit"
    assert rest[1:4] == ["--core=0:0", "--nofile=64:64", "--"]
    assert os.path.basename(rest[4]) == "setpriv"
    assert rest[5:] == ["--reuid=65534", "--regid=65533", "--clear-groups", "--"]


def test_exec_wrapper_without_joins_or_drop() -> None:
    argv = exec_wrapper([(resource.RLIMIT_FSIZE, resource.RLIM_INFINITY, 5)], [])
    if argv is None:
        require("prlimit (util-linux) not installed")
    assert argv is not None
    assert os.path.basename(argv[0]) == "prlimit"
    assert argv[1:] == ["--fsize=unlimited:5", "--"]


# --- bwrap ---------------------------------------------------------------------------------------


def _read_args(fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return [part.decode() for part in data.split(b"\0")[:-1]]


def test_bwrap_build_keeps_everything_off_the_command_line() -> None:
    spawned = bwrap.build(
        "/usr/bin/bwrap",
        ["python3", "/work/x.py"],
        workdir="/host/wd",
        env={"SECRET": "s3cret", "PATH": "/usr/bin"},
        uid=65534,
        gid=65534,
        network=False,
        tmp_bytes=64 * MIB,
        seccomp_fd=None,
        extra_ro=("/opt/py",),
    )
    try:
        argv = spawned.argv
        assert argv[:2] == ["/usr/bin/bwrap", "--args"]
        assert argv[3:] == ["--", "python3", "/work/x.py"]
        assert "s3cret" not in " ".join(argv)
        assert "/host/wd" not in " ".join(argv)
        args_fd = int(argv[2])
        assert args_fd in spawned.pass_fds
        opts = _read_args(args_fd)
        assert opts[0] == "--unshare-all"
        assert "--share-net" not in opts
        assert "/etc/resolv.conf" not in opts
        i = opts.index("--bind")
        assert opts[i : i + 3] == ["--bind", "/host/wd", bwrap.SANDBOX_HOME]
        i = opts.index("SECRET")
        assert opts[i - 1 : i + 2] == ["--setenv", "SECRET", "s3cret"]
        assert opts[opts.index("--size") + 1] == str(64 * MIB)
        assert opts[opts.index("/opt/py") - 1 : opts.index("/opt/py") + 2] == [
            "--ro-bind-try",
            "/opt/py",
            "/opt/py",
        ]
        assert "--seccomp" not in opts
        passwd_fd = int(opts[opts.index("/etc/passwd") - 1])
        passwd = os.pread(passwd_fd, 4096, 0).decode()
        assert "sandbox:x:65534:65534:sandbox:/work:/usr/sbin/nologin" in passwd
    finally:
        spawned.close()
    assert spawned.pass_fds == []


def test_bwrap_build_network_and_seccomp() -> None:
    seccomp_fd = os.memfd_create("test-filter", os.MFD_CLOEXEC)
    spawned = bwrap.build(
        "/usr/bin/bwrap",
        ["true"],
        workdir="/w",
        env={},
        uid=0,
        gid=0,
        network=True,
        tmp_bytes=MIB,
        seccomp_fd=seccomp_fd,
    )
    try:
        opts = _read_args(int(spawned.argv[2]))
        assert opts[:2] == ["--unshare-all", "--share-net"]
        assert "/etc/resolv.conf" in opts
        assert opts[opts.index("--seccomp") + 1] == str(seccomp_fd)
        assert seccomp_fd in spawned.pass_fds
        passwd_fd = int(opts[opts.index("/etc/passwd") - 1])
        assert os.pread(passwd_fd, 4096, 0) == b"root:x:0:0:root:/work:/usr/sbin/nologin\n"
    finally:
        spawned.close()  # closes the seccomp descriptor too


# --- cgroup plan and join ------------------------------------------------------------------------


def test_limit_plan() -> None:
    both = LimitSupport(memory="v1", pids="v2")
    plan = limit_plan(both, 512, 64)
    assert (plan.memory, plan.pids) == ("v1", "v2")
    assert (plan.memory_by, plan.pids_by) == ("cgroup-v1", "cgroup-v2")
    plan = limit_plan(both, None, None)
    assert (plan.memory, plan.pids) == (None, None)
    plan = limit_plan(LimitSupport(), 512, 64)
    assert (plan.memory_by, plan.pids_by) == ("rlimit-as", "rlimit-nproc-per-uid")


def test_cgroup_join_plus() -> None:
    a = CgroupJoin((Path("/a"),), (3,))
    b = CgroupJoin((Path("/b"), Path("/c")), (4, 5))
    assert a.plus(b) == CgroupJoin((Path("/a"), Path("/b"), Path("/c")), (3, 4, 5))
    assert CgroupJoin().plus(a) == a


def test_scrub_paths_hides_server_paths_longest_first() -> None:
    from mcpexec.executor.outcome import scrub_paths

    paths = {"/srv/home/work": "<work root>", "/srv/home/work/i-1/run.1": "/work", "": "x"}
    msg = "No space left on device: '/srv/home/work/i-1/run.1/in.txt' (in /srv/home/work/i-1)"
    assert scrub_paths(msg, paths) == (
        "No space left on device: '/work/in.txt' (in <work root>/i-1)"
    )


def test_command_searched_on_path_finds_only_executable_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").mkdir()  # a directory by that name: skipped
    (first / "other").write_text("#!/bin/sh\n")  # not executable: skipped
    (second / "tool").write_text("#!/bin/sh\n")
    (second / "tool").chmod(0o755)
    path = f"{first}:{second}"
    found = command_for(ExecSpec(command=["tool"]), path=path, cwd=tmp_path, home=tmp_path)
    assert found.executable == str(second / "tool")
    with pytest.raises(CommandError, match="command not found: other"):
        command_for(ExecSpec(command=["other"]), path=path, cwd=tmp_path, home=tmp_path)
