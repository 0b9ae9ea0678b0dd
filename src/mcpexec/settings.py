"""Configuration, read once at the edge and passed inward as an explicit object.

Precedence: command-line flags (passed as keyword arguments), then ``MCPEXEC_*`` environment
variables, then the config file named by ``MCPEXEC_CONFIG`` (default ``$MCPEXEC_HOME/config.toml``,
or ``config.yaml`` when only that exists; TOML or YAML, ``${ENV}`` references, unknown keys
refused: ``config_file.py``), then the defaults below.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcpexec import config_file as config_file_
from mcpexec.alert_rules import AlertRule
from mcpexec.errors import ConfigError
from mcpexec.models import check_worker_labels
from mcpexec.paths import config_file, default_home

MIB = 1024 * 1024

__all__ = ["ConfigError", "Settings", "default_home", "load_settings"]


def _known_keys(settings_cls: type[BaseSettings]) -> set[str]:
    """Every key a config file may give: the settings' names and their other names."""
    known: set[str] = {"task_path"}  # run_path's deprecated name (``_task_path`` below)
    for name, field in settings_cls.model_fields.items():
        known.add(name)
        if field.alias:
            known.add(field.alias)
        alias = field.validation_alias
        if isinstance(alias, str):
            known.add(alias)
        elif isinstance(alias, AliasChoices):
            known.update(c for c in alias.choices if isinstance(c, str))
    return known


def _config_file() -> Path:
    path = config_file()
    try:
        mode = path.stat().st_mode
    except OSError:
        return path
    # Whoever can write the config decides what runs and where secrets go: refuse, like sshd.
    if stat.S_ISREG(mode) and mode & stat.S_IWOTH:
        raise ConfigError(
            f"config file {path} is writable by every user (mode {stat.S_IMODE(mode):o}); "
            f"fix: chmod o-w {path}"
        )
    return path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MCPEXEC_", extra="ignore", frozen=True, populate_by_name=True
    )

    home: Path = Field(default_factory=default_home, description="data directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535)
    url: str = Field(default="http://127.0.0.1:8002", description="server the CLI talks to")
    public_url: str | None = Field(
        default=None,
        description="base of the links in API answers (e.g. https://exec.example.com); "
        "relative links when unset (never taken from the request's Host header)",
    )
    token: str | None = Field(default=None, repr=False)
    database_url: str | None = Field(
        default=None,
        description="the store: sqlite:///PATH (default: mcpexec.db under home), "
        "postgresql://USER@HOST/DBNAME (many machines share it) or memory://",
        repr=False,
    )
    blob_store: Literal["auto", "directory", "postgres"] = Field(
        default="auto",
        description="where artifact bytes go: postgres (in the PostgreSQL database, readable "
        "from every machine on it), directory (files under home/artifacts; several machines "
        "need it on a shared file system) or auto (postgres with a PostgreSQL database_url, "
        "else directory)",
    )

    #: Observability (issue 17, docs/observability.md).
    log_format: Literal["text", "json"] = Field(
        default="text", description="text (human lines) or json (one object per line)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log level of serve, worker and scheduler"
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces): a span "
        "per run and attempt; off when unset",
        pattern=r"^https?://\S+$",
    )
    otel_service_name: str = Field(
        default="mcpexec", min_length=1, max_length=100, description="service.name of spans"
    )
    metrics_public: bool = Field(
        default=False,
        description="serve /metrics without a token (e.g. on a private scrape network)",
    )
    #: ``mcpexec worker`` and ``mcpexec scheduler`` serve no HTTP; with a port they expose
    #: their own counters (no token: bind it to loopback or a private network, see ``host``).
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="worker/scheduler: serve this process's counters at http://HOST:PORT/",
    )

    workers: int = Field(default=4, ge=0, le=256, description="worker slots in this process")
    #: Worker labels / routing (issue 13): this process's workers claim the runs asking for
    #: labels all among these, and the runs asking for none.
    worker_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="labels of this process's workers (comma-separated in the environment): "
        "they also run the runs whose worker_labels are all among them",
    )
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
    #: Storage budget (logs + artifacts kept until retention purges them), checked at submit:
    #: over it, submits are refused with 507 ``storage_quota_exceeded``. ``None``: no budget.
    max_storage_mb: float | None = Field(default=None, gt=0, description="budget, all tenants")
    tenant_max_storage_mb: float | None = Field(
        default=None, gt=0, description="budget of each tenant"
    )
    #: Quotas of a tenant that sets none of its own (issue 10, docs/tenancy.md): running
    #: attempts (``None``: only the worker slots limit) and pending runs (a submit past it
    #: answers 429 ``quota_exceeded``).
    tenant_max_concurrent: int | None = Field(
        default=None, ge=1, description="running attempts per tenant (default: no limit)"
    )
    tenant_max_queued: int | None = Field(
        default=100_000, ge=1, description="pending runs per tenant"
    )
    #: Pending runs of all tenants together (``None``: only each tenant's limit).
    max_queued: int | None = Field(default=None, ge=1, description="pending runs in all")
    #: PATH of the run's processes. ``task_path`` / ``MCPEXEC_TASK_PATH`` is the deprecated name.
    run_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MCPEXEC_RUN_PATH", "MCPEXEC_TASK_PATH"),
        description="PATH of the run's processes (deprecated alias: task_path)",
    )
    keep_workdirs: bool = False
    #: Workflow telemetry (issue 16): every workflow event is also appended here as a JSON
    #: line (``-``: standard error). Events are stored per workflow run either way.
    workflow_events_file: str | None = Field(
        default=None, description="append workflow events as JSON lines (- : stderr)"
    )
    #: Spawn each run's process from a small helper process (one exec per run) instead of
    #: through the exec wrapper (/bin/sh, prlimit, setpriv) from the server; see
    #: docs/architecture.md "The executor". Falls back to the wrapper if the helper cannot start.
    spawn_helper: bool = Field(
        default=True, description="fork+exec runs from a spawn helper process (zygote)"
    )

    # -- sandbox (see docs/architecture.md "Sandbox"; `mcpexec doctor` shows what applies) -----
    sandbox: Literal["default", "strict", "none"] = Field(
        default="default",
        description="default: bwrap, limits where the host allows (warns otherwise); strict: "
        "refuse to start without bwrap, cgroup memory+pids and a workdir size limit; none: no "
        "isolation (process group + rlimits only)",
    )
    sandbox_uid: int = Field(
        default=65534, ge=1, description="uid of the run's processes when serve runs as root"
    )
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

    # -- the gateway to downstream MCP servers (docs/gateway.md) ---------------------------------
    mcp_config: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("mcp_config", "MCPEXEC_MCP_CONFIG", "MCP_CONFIG_PATH"),
        description="the mcp_servers.json of downstream MCP servers (also MCP_CONFIG_PATH, the "
        "seed's name); unset: no downstream servers",
    )
    sandbox_directory: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "sandbox_directory", "MCPEXEC_SANDBOX_DIRECTORY", "SANDBOX_DIRECTORY"
        ),
        description="root of the built-in fs server's tools (also SANDBOX_DIRECTORY, the "
        "seed's name); unset: no fs server",
    )
    max_concurrent_executions: int = Field(
        default=10,
        ge=1,
        le=4096,
        validation_alias=AliasChoices(
            "max_concurrent_executions",
            "MCPEXEC_MAX_CONCURRENT_EXECUTIONS",
            "MAX_CONCURRENT_EXECUTIONS",
        ),
        description="tool calls in flight at once, all servers together",
    )
    tool_acquire_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="how long a tool call waits for a free slot"
    )
    max_tool_output_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="a tool call's result beyond this is cut"
    )

    retention_days: float = Field(default=30.0, gt=0)
    # -- the event log (GET /api/v1/events; see docs/observability.md) -----------------------------
    events_max_count: int = Field(
        default=100_000, ge=100, description="events kept in the log, the newest (pruned beyond)"
    )
    events_retention_days: float = Field(
        default=7.0, gt=0, description="events older than this are pruned"
    )
    events_poll_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often an event stream re-reads the store for other processes' events",
    )
    # -- webhooks and alerts (issue 17; docs/observability.md) ---------------------------------
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        description="HMAC-SHA256 key of the Mcpexec-Signature header; unset: webhooks refused",
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="webhook targets: * (any public host), HOST, *.DOMAIN, or a network "
        "(127.0.0.1, 10.0.0.0/8) whose private, loopback or link-local addresses are allowed",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    webhook_retry_s: float = Field(default=5.0, gt=0, description="first retry delay (doubles)")
    webhook_max_delay_s: float = Field(default=3600.0, gt=0)
    webhook_poll_s: float = Field(
        default=2.0, gt=0, le=60, description="how often deliveries are looked for"
    )
    alerts: list[AlertRule] = Field(
        default_factory=list, description="alert rules ([[alerts]] tables / alerts: list)"
    )
    alert_interval_s: float = Field(default=15.0, gt=0, description="alert evaluation period")
    purge_interval_s: float = Field(default=3600.0, gt=0)
    max_body_bytes: int = Field(default=8 * MIB, ge=1024)
    # -- spool directory (see docs/spool.md) ------------------------------------------------------
    spool_tenant: str = Field(default="default", description="tenant spool jobs run in")
    spool_timeout_s: float = Field(
        default=300.0, gt=0, description="timeout of a spool job that sets none (the seed's)"
    )
    spool_parallel: int | None = Field(
        default=None, ge=1, le=1024, description="jobs in flight at once (default: workers)"
    )
    spool_max_job_bytes: int = Field(default=1 * MIB, ge=1024, description="largest job file")
    spool_result_output_bytes: int = Field(
        default=1 * MIB, ge=0, description="stdout/stderr kept per stream in a result file"
    )
    spool_retention_days: float = Field(
        default=30.0, gt=0, description="completed/ and failed/ entries older than this go"
    )
    spool_rescan_s: float = Field(
        default=2.0, gt=0, description="safety-net rescan when no inotify event arrives"
    )
    #: Slow clients: a request's headers, then its body, must arrive within these; idle
    #: keep-alive connections close after ``keep_alive_s``; beyond ``max_connections`` open
    #: connections new requests get 503.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    keep_alive_s: int = Field(default=5, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra Host names /mcp accepts (comma-separated in the environment)",
    )

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        """``task_path`` (keyword or config file key) is the deprecated name of ``run_path``."""
        if isinstance(data, dict) and "task_path" in data:
            data = dict(data)
            old = data.pop("task_path")
            # Sources are merged by then: a new name from any source wins over the old one.
            if not {"run_path", "MCPEXEC_RUN_PATH"} & data.keys():
                data["run_path"] = old
        return data

    @field_validator("mcp_allowed_hosts", "sandbox_ro_binds", "webhook_allow", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("worker_labels", mode="before")
    @classmethod
    def _worker_labels(cls, value: object) -> object:
        if isinstance(value, str):
            value = [label.strip() for label in value.split(",") if label.strip()]
        return check_worker_labels(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
            data = config_file_.load(path, _known_keys(settings_cls))
            sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
        return tuple(sources)

    @property
    def gateway_configured(self) -> bool:
        """Whether this process has tools to offer (downstream servers or ``fs``)."""
        return self.mcp_config is not None or self.sandbox_directory is not None

    @property
    def task_path(self) -> str | None:
        """Deprecated name of :attr:`run_path`."""
        return self.run_path

    @property
    def db_path(self) -> Path:
        return self.home / "mcpexec.db"

    @property
    def store_url(self) -> str:
        """``database_url``, or the SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{self.db_path}"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def url_path(self) -> Path:
        """Where ``serve`` records the URL it listens on (the CLI's default server)."""
        return self.home / "url"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"


def load_settings(**overrides: Any) -> Settings:
    """Settings from flags (``overrides``; ``None`` values are ignored), env and config file.

    Raises ``ConfigError`` with one line naming the file, the key and the fix."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, given)) from None


def _explain(exc: Any, given: dict[str, Any]) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else "?"
    if key in given:
        where = f"--{key.replace('_', '-')}"
    elif f"MCPEXEC_{key.upper()}" in os.environ:
        where = f"MCPEXEC_{key.upper()}"
    else:
        where = f"{key} in {config_file()}"
    return (
        f"setting {where} = {error.get('input')!r}: {error['msg']}; "
        f"fix it (see src/mcpexec/settings.py for {key})"
    )
