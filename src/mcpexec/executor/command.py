"""What an attempt execs: the run's argv and executable, and its whole environment.

Pure apart from looking programs up on ``PATH`` (unit tests: ``tests/unit/test_executor_pure.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcpexec.executor.procfs import INSTANCE_VAR, RUN_TOKEN_VAR
from mcpexec.executor.workdir import CONTROL_DIR, OUTPUT_DIR, PROGRESS_FILE, RESULT_FILE, TMP_DIR
from mcpexec.models import ExecSpec

#: ``script.language`` → (interpreter looked up on the run's PATH, script file extension).
INTERPRETERS = {
    "python": ("python3", ".py"),
    "bash": ("bash", ".sh"),
    "sh": ("sh", ".sh"),
    "node": ("node", ".js"),
}


class CommandError(Exception):
    """Why the spec cannot be exec'ed (reported as a ``spawn_error``)."""


@dataclass(frozen=True)
class Command:
    """``argv`` and the ``executable`` to exec; ``script``: (workdir-relative path, source) to
    write before the spawn, for a ``script`` spec."""

    argv: list[str]
    executable: str
    script: tuple[str, bytes] | None = None


def _which(prog: str, path: str, cwd: Path) -> str | None:
    if "/" in prog:  # relative to the workdir, as exec would take it; exec reports the rest
        return str(cwd / prog)
    return shutil.which(prog, path=path)


def command_for(spec: ExecSpec, *, path: str, cwd: Path, home: Path) -> Command:
    """The command of ``spec``: ``path`` is the run's PATH, ``cwd`` the workdir on the host,
    ``home`` the workdir as the run's process sees it (they differ in the sandbox)."""
    if spec.command is not None:
        exe = _which(spec.command[0], path, cwd)
        # A PATH search returns only executables that are not directories; a path given with
        # a "/" is checked here, because the exec wrapper would turn a failed exec into exit
        # 126/127.
        given = "/" in spec.command[0]
        if exe is None or (given and not os.path.exists(exe)):  # a path that names nothing
            raise CommandError(f"command not found: {spec.command[0]} (PATH={path})")
        if given and (not os.path.isfile(exe) or not os.access(exe, os.X_OK)):
            raise CommandError(
                f"cannot execute {spec.command[0]}: Permission denied (not an executable file)"
            )
        return Command(list(spec.command), exe)
    if spec.shell is not None:
        return Command(["/bin/sh", "-c", spec.shell], "/bin/sh")
    assert spec.script is not None
    interpreter, ext = INTERPRETERS[spec.script.language]
    exe = shutil.which(interpreter, path=path)
    if exe is None:
        lang = spec.script.language
        raise CommandError(f"interpreter not found: {interpreter} for {lang} (PATH={path})")
    script = f"{CONTROL_DIR}/script{ext}"
    return Command([interpreter, str(home / script)], exe, (script, spec.script.source.encode()))


@dataclass(frozen=True)
class RunEnvironment:
    """Everything the run's environment is made of, fixed by the executor before the attempt;
    :meth:`build` places it at the workdir. Never the server's environment: an allowlist
    (``PATH``, ``LANG``, ``LC_ALL``, ``TZ``), the spec's variables and secrets, ours."""

    run_id: str
    attempt: int
    path: str
    spec_env: Mapping[str, str]
    secrets: Mapping[str, str] = field(repr=False)
    token: str = field(repr=False)
    instance_id: str = ""
    host: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        spec: ExecSpec,
        *,
        run_id: str,
        attempt: int,
        run_path: str | None,
        secrets: Mapping[str, str],
        token: str,
        instance_id: str,
        host: Mapping[str, str] = os.environ,
    ) -> RunEnvironment:
        allowed = {n: host[n] for n in ("LANG", "LC_ALL", "TZ") if n in host}
        return cls(
            run_id=run_id,
            attempt=attempt,
            path=run_path or host.get("PATH") or os.defpath,
            spec_env=dict(spec.env),
            secrets={n: secrets[n] for n in spec.secrets if n in secrets},
            token=token,
            instance_id=instance_id,
            host=allowed,
        )

    def build(self, home: Path, tmp: str | None = None) -> dict[str, str]:
        """The whole environment with the workdir at ``home``; ``tmp`` overrides ``TMPDIR``."""
        env = {"PATH": self.path, "LANG": self.host.get("LANG") or "C.UTF-8"}
        for name in ("LC_ALL", "TZ"):
            if name in self.host:
                env[name] = self.host[name]
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home / TMP_DIR)
        env.update(self.spec_env)
        env.update(self.secrets)
        env.update(
            MCPEXEC_RUN_ID=self.run_id,
            MCPEXEC_ATTEMPT=str(self.attempt),
            MCPEXEC_OUTPUT_DIR=str(home / OUTPUT_DIR),
            MCPEXEC_PROGRESS=str(home / PROGRESS_FILE),
            MCPEXEC_RESULT=str(home / RESULT_FILE),
        )
        # The markers the tree sweep and the watchdog recognise the run's processes by.
        env[RUN_TOKEN_VAR] = self.token
        env[INSTANCE_VAR] = self.instance_id
        if tmp:
            env["TMPDIR"] = tmp
        return env
