"""Configuration, read once at the edge and passed inward as an explicit object.

Precedence: command-line flags (passed as keyword arguments), then ``MCPEXEC_*`` environment
variables, then the TOML file named by ``MCPEXEC_CONFIG`` (default ``$MCPEXEC_HOME/config.toml``
when it exists), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MIB = 1024 * 1024


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcpexec"


def _config_file() -> Path:
    explicit = os.environ.get("MCPEXEC_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("MCPEXEC_HOME")
    return (Path(home) if home else default_home()) / "config.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCPEXEC_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=default_home, description="data directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535)
    url: str = Field(default="http://127.0.0.1:8002", description="server the CLI talks to")
    token: str | None = Field(default=None, repr=False)

    workers: int = Field(default=4, ge=0, le=256, description="worker slots in this process")
    lease_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    poll_s: float = Field(default=1.0, gt=0, description="claim poll when no wake-up arrives")
    reaper_s: float = Field(default=5.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)

    default_timeout_s: float = Field(default=3600.0, gt=0)
    max_timeout_s: float = Field(default=7 * 86400.0, gt=0)
    kill_grace_s: float = Field(default=2.0, ge=0)
    file_size_mb: int = Field(default=1024, ge=1)
    open_files: int = Field(default=1024, ge=16)
    max_output_bytes: int = Field(default=10 * MIB, ge=1024)
    max_artifacts: int = Field(default=100, ge=0)
    max_artifact_bytes: int = Field(default=100 * MIB, ge=0)
    task_path: str | None = Field(default=None, description="PATH inside tasks")
    keep_workdirs: bool = False

    # -- sandbox (see docs/architecture.md "Sandbox"; `mcpexec doctor` shows what applies) -----
    sandbox: Literal["default", "strict", "none"] = Field(
        default="default",
        description="default: bwrap, limits where the host allows (warns otherwise); strict: "
        "refuse to start without bwrap, cgroup memory+pids and a workdir size limit; none: no "
        "isolation (process group + rlimits only)",
    )
    sandbox_uid: int = Field(default=65534, ge=1, description="task uid when serve runs as root")
    sandbox_gid: int = Field(default=65534, ge=1)
    sandbox_work_dir: Path | None = Field(
        default=None,
        description="workdirs of sandboxed runs when serve runs as root (must be traversable "
        "by sandbox_uid); default /tmp/mcpexec-sandbox",
    )
    sandbox_tmp_mb: int = Field(default=64, ge=1, description="size of the private /tmp")
    sandbox_ro_binds: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra read-only paths inside the sandbox (interpreters outside /usr)",
    )
    #: Per-run defaults (a spec's ``limits`` overrides them) and server maxima (clamp them).
    memory_mb: int | None = Field(default=1024, ge=16)
    max_memory_mb: int = Field(default=65536, ge=16)
    pids: int | None = Field(default=256, ge=8)
    max_pids: int = Field(default=16384, ge=8)
    disk_mb: int | None = Field(default=1024, ge=1)
    max_disk_mb: int = Field(default=65536, ge=1)
    cpu_s: int | None = Field(default=None, ge=1)
    max_cpu_s: int | None = Field(default=None, ge=1)
    max_file_size_mb: int = Field(default=65536, ge=1)
    max_open_files: int = Field(default=65536, ge=16)
    #: Named secrets a spec may expose as environment variables (``secrets: [NAME]``). From the
    #: config file's ``[secrets]`` table and/or ``secrets_file`` (``NAME=value`` lines, mode 0600).
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    secrets_file: Path | None = None

    retention_days: float = Field(default=30.0, gt=0)
    purge_interval_s: float = Field(default=3600.0, gt=0)
    max_body_bytes: int = Field(default=8 * MIB, ge=1024)
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra Host names /mcp accepts (comma-separated in the environment)",
    )

    @field_validator("mcp_allowed_hosts", "sandbox_ro_binds", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def db_path(self) -> Path:
        return self.home / "mcpexec.db"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"


def load_settings(**overrides: Any) -> Settings:
    """Settings from flags (``overrides``; ``None`` values are ignored), env and config file."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)
