"""Sandbox configuration without abuse: secrets loading and redaction, limit defaults and maxima,
mode selection (strict refusals, none), the submit-time checks and `mcpexec doctor`."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from executor_helpers import layer, require
from mcpexec.app import App
from mcpexec.errors import InvalidRequest, SandboxUnavailable, SecretsError
from mcpexec.executor import probe as probe_mod
from mcpexec.executor import sandbox as sandbox_mod
from mcpexec.executor.fake import FakeExecutor
from mcpexec.executor.redact import Redactor, load_secrets_file
from mcpexec.executor.sandbox import SandboxConfig, SandboxExecutor, build_executor
from mcpexec.executor.subprocess import SubprocessExecutor
from mcpexec.models import ExecSpec, RunRequest, Stream
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.worker import effective_limits

from .conftest import NO_BWRAP, ROOT, execute

pytestmark = pytest.mark.anyio
SECRET = "s3cr3t-Value/with+chars=="


# -- redaction ------------------------------------------------------------------------------------
def test_redactor_catches_plain_base64_url_and_hex_forms() -> None:
    r = Redactor({"TOK": SECRET})
    raw = SECRET.encode()
    for form in (
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(b"x" + raw + b"y"),  # at another offset in a base64 stream
        base64.b64encode(b"xy" + raw),
        quote(SECRET, safe="").encode(),
        raw.hex().encode(),
    ):
        out = r.redact(b"before " + form + b" after")
        assert b"[redacted:TOK]" in out, form
        assert raw not in out


def test_redactor_catches_a_value_split_across_chunks() -> None:
    r = Redactor({"TOK": SECRET})
    data = b"head " + SECRET.encode() + b" tail " + SECRET.encode()
    for size in (1, 2, 3, 7, 100):
        out = b"".join(r.feed(Stream.STDOUT, data[i : i + size]) for i in range(0, len(data), size))
        out += r.flush(Stream.STDOUT)
        assert out == b"head [redacted:TOK] tail [redacted:TOK]", size


def test_secrets_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("# comment\nAPI_TOKEN=abc-123-xyz\n\nOTHER=with=equals\n")
    path.chmod(0o644)
    with pytest.raises(SecretsError, match="chmod 600"):
        load_secrets_file(path)
    path.chmod(0o600)
    assert load_secrets_file(path) == {"API_TOKEN": "abc-123-xyz", "OTHER": "with=equals"}
    path.write_text("no equals sign here\n")
    with pytest.raises(SecretsError, match="line 1") as info:
        load_secrets_file(path)
    assert "no equals" not in str(info.value)  # a bad line is never echoed: it may hold a value


# -- limits ---------------------------------------------------------------------------------------
def test_limits_get_server_defaults_and_are_clamped_to_maxima() -> None:
    settings = Settings(
        home=Path("/nonexistent"),
        memory_mb=512,
        pids=100,
        disk_mb=64,
        cpu_s=5,
        max_memory_mb=1024,
        max_pids=200,
        max_disk_mb=128,
        max_cpu_s=10,
    )
    lim = effective_limits(ExecSpec(command=["true"]), settings)
    assert (lim.memory_mb, lim.pids, lim.disk_mb, lim.cpu_s) == (512, 100, 64, 5)
    spec = ExecSpec.model_validate(
        {
            "command": ["true"],
            "limits": {"memory_mb": 4096, "pids": 1000, "disk_mb": 9999, "cpu_s": 60},
        }
    )
    lim = effective_limits(spec, settings)
    assert (lim.memory_mb, lim.pids, lim.disk_mb, lim.cpu_s) == (1024, 200, 128, 10)


def test_spec_validates_secret_names_and_network() -> None:
    spec = ExecSpec.model_validate({"command": ["true"], "secrets": ["A", "A"], "network": True})
    assert spec.secrets == ["A"]
    assert spec.network
    for bad in (["1X"], ["MCPEXEC_RUN_ID"]):
        with pytest.raises(ValueError, match="secret name"):
            ExecSpec.model_validate({"command": ["true"], "secrets": bad})
    with pytest.raises(ValueError, match="both"):
        ExecSpec.model_validate({"command": ["true"], "secrets": ["A"], "env": {"A": "x"}})


# -- submit-time checks ---------------------------------------------------------------------------
async def test_unknown_secret_is_a_validation_error_at_submit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    executor = SubprocessExecutor(tmp_path / "work", secrets={"KNOWN": "known-value"})
    app = App(settings, MemoryStore(), executor, FileBlobStore(tmp_path / "blobs"))
    await app.open()
    try:
        admin = await app.authenticate(await app.create_token("t"))
        with pytest.raises(InvalidRequest, match="MISSING") as info:
            await app.submit(
                RunRequest.model_validate({"command": ["true"], "secrets": ["KNOWN", "MISSING"]}),
                admin,
            )
        assert "known-value" not in str(info.value)
        run, _ = await app.submit(
            RunRequest.model_validate({"command": ["true"], "secrets": ["KNOWN"]}), admin
        )
        assert run.spec.secrets == ["KNOWN"]
        assert "known-value" not in run.spec.model_dump_json()
    finally:
        await app.close()
    assert FakeExecutor().check_spec(ExecSpec(command=["true"], secrets=["X"])) is None


def test_strict_refuses_network_at_submit() -> None:
    strict = SandboxExecutor(Path("/nonexistent"), SandboxConfig(strict=True))
    default = SandboxExecutor(Path("/nonexistent"), SandboxConfig())
    spec = ExecSpec(command=["true"], network=True)
    assert "strict" in (strict.check_spec(spec) or "")
    assert default.check_spec(spec) is None


# -- modes ----------------------------------------------------------------------------------------
def test_mode_none_builds_the_plain_executor_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ex = build_executor(Settings(home=tmp_path, sandbox="none"))
    assert type(ex) is SubprocessExecutor
    assert "SANDBOX DISABLED" in caplog.text
    default = build_executor(Settings(home=tmp_path))
    assert isinstance(default, SandboxExecutor)
    assert not default.config.strict


def test_settings_secrets_file_errors_refuse_to_build(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("A=abcdef\n")
    path.chmod(0o640)
    with pytest.raises(SandboxUnavailable, match="chmod 600"):
        build_executor(Settings(home=tmp_path, secrets_file=path))
    with pytest.raises(SandboxUnavailable, match="shorter"):
        build_executor(Settings(home=tmp_path, secrets={"A": "ab"}))


@layer(f"bwrap unusable: {NO_BWRAP}" if NO_BWRAP else None)
async def test_strict_refuses_to_start_when_a_layer_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_mod, "probe_disk", lambda root: "no tmpfs here (test)")
    work = Path("/tmp/mcpexec-sandbox") if ROOT else tmp_path / "work"
    strict = SandboxExecutor(work, SandboxConfig(strict=True))
    with pytest.raises(SandboxUnavailable, match="workdir size limit"):
        await strict.start()
    assert not strict.instance_dir.exists()
    # default mode runs, and every attempt names what it lacks
    default = SandboxExecutor(work, SandboxConfig())
    await default.start()
    try:
        result, sink = await execute(default, {"command": ["echo", "ok"]})
        assert sink.out == "ok\n"
        assert "disk=UNLIMITED" in (result.isolation or "")
        assert "disk_mb" not in (result.limits or {})
    finally:
        await default.stop()


@layer(f"bwrap unusable: {NO_BWRAP}" if NO_BWRAP else None)
async def test_strict_runs_where_everything_is_available(tmp_path: Path) -> None:
    p = probe_mod.probe("strict")
    if p.missing_for_strict:
        require(f"strict mode cannot run here: {p.missing_for_strict}")
    work = Path("/tmp/mcpexec-sandbox") if ROOT else tmp_path / "work"
    ex = SandboxExecutor(work, SandboxConfig(strict=True))
    await ex.start()
    try:
        result, sink = await execute(
            ex, {"command": ["python3", "-c", "import socket; socket.socket()"]}
        )
        assert (result.isolation or "").startswith("bwrap(strict)")
        assert "EAFNOSUPPORT" in sink.err or "Address family" in sink.err  # no inet sockets
    finally:
        await ex.stop()


def test_doctor_prints_every_layer_and_the_mode() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mcpexec"), "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MCPEXEC_HOME": "/nonexistent-home"},
    )
    for row in ("bwrap", "seccomp", "cgroup memory", "cgroup pids", "workdir size", "landlock"):
        assert row in proc.stdout
    assert "serve would" in proc.stdout
    assert proc.returncode == (1 if NO_BWRAP else 0), proc.stdout


def test_run_path_setting_and_its_deprecated_alias_task_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPEXEC_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("MCPEXEC_RUN_PATH", "MCPEXEC_TASK_PATH", "RUN_PATH", "TASK_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert Settings(home=tmp_path).run_path is None
    monkeypatch.setenv("RUN_PATH", "/not/ours")  # only MCPEXEC_* names are read
    assert Settings(home=tmp_path).run_path is None
    monkeypatch.setenv("MCPEXEC_TASK_PATH", "/old")
    assert Settings(home=tmp_path).run_path == "/old"
    assert Settings(home=tmp_path).task_path == "/old"
    monkeypatch.setenv("MCPEXEC_RUN_PATH", "/new")
    assert Settings(home=tmp_path).run_path == "/new"
    assert Settings(home=tmp_path, run_path="/flag").run_path == "/flag"
    old_kwarg: dict[str, Any] = {"task_path": "/kw"}
    assert Settings(home=tmp_path, **old_kwarg).run_path == "/new"  # env beats an old kwarg
    config = tmp_path / "config.toml"
    config.write_text('task_path = "/toml"\n')
    monkeypatch.setenv("MCPEXEC_CONFIG", str(config))
    monkeypatch.delenv("MCPEXEC_RUN_PATH")
    monkeypatch.delenv("MCPEXEC_TASK_PATH")
    assert Settings(home=tmp_path).run_path == "/toml"
    assert Settings(home=tmp_path, run_path="/flag").run_path == "/flag"


def test_build_executor_passes_run_path(tmp_path: Path) -> None:
    ex = build_executor(Settings(home=tmp_path, sandbox="none", run_path="/opt/bin:/usr/bin"))
    assert isinstance(ex, SubprocessExecutor)
    assert ex.run_path == "/opt/bin:/usr/bin"
