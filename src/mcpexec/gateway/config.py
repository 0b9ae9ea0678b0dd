"""Configuration of downstream MCP servers, from an operator-owned JSON file.

Two shapes are read:

- ``{"mcpServers": {"NAME": {...}}}`` as Claude Desktop, VS Code and mcpo write it: stdio
  servers (``command``, ``args``, ``env``, ``cwd``) and remote ones (``type: "http"`` or
  ``"streamable-http"``, ``url``, ``headers``);
- seed 001's ``{"servers": [{"name", "command", "args", "env", "timeout"}]}``.

Either may add mcpexec's per-server keys (``timeout_s``, ``max_total_s``, ``max_concurrency``,
``startup_timeout_s``, ``enabled``, ``tools: {"allow": [...], "deny": [...]}``, ``network``,
``start: "eager"|"lazy"``, ``processes``, ``sandbox``, ``read_only``, ``writable``,
``limits: {"memory_mb", "pids", "open_files"}``). ``${VAR}`` in ``command``, ``args``, ``env``,
``cwd``, ``url`` and ``headers`` is replaced from the *secrets* mapping the caller passes —
never from the process environment or a request — and a value never appears in an error.

One bad server entry never stops the others: :func:`load_config` returns the good servers and
a list of problems, each naming the file, the server and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcpexec.gateway.errors import GatewayConfigError

_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED = frozenset({"fs"})  # the built-in server
_HTTP_TYPES = {"http", "streamable-http", "streamablehttp", "streamable_http"}
_KNOWN = {
    "name", "type", "transport", "command", "args", "env", "cwd", "url", "headers", "timeout",
    "timeout_s", "max_total_s", "max_concurrency", "startup_timeout_s", "enabled", "disabled",
    "tools", "network", "start", "eager", "processes", "sandbox", "read_only", "writable",
    "limits",
    "description", "autoApprove", "alwaysAllow",  # other clients' keys: accepted, unused
}  # fmt: skip


@dataclass(frozen=True)
class ServerLimits:
    """A server's ``limits`` object: ``memory_mb`` (its whole tree), ``pids`` (processes and
    threads of its tree), ``open_files`` (per process). ``None``: the default applies."""

    memory_mb: int | None = None
    pids: int | None = None
    open_files: int | None = None

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if v is not None}


_LIMIT_RANGES = {
    "memory_mb": (16, 1024 * 1024),
    "pids": (8, 1_000_000),
    "open_files": (16, 1 << 20),
}


@dataclass(frozen=True)
class ServerConfig:
    """One downstream MCP server: ``stdio`` (``command``, …) or ``http`` (``url``)."""

    name: str
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A call's timeout; each progress notification restarts it, up to ``max_total_s``.
    timeout_s: float = 60.0
    max_total_s: float = 600.0
    max_concurrency: int = 8
    startup_timeout_s: float = 30.0
    enabled: bool = True
    tools_allow: tuple[str, ...] | None = None  # globs; None: all
    tools_deny: tuple[str, ...] = ()
    network: bool = False  # for the sandbox the domain wraps a stdio server in
    eager: bool = False  # start with the gateway (else at first use)
    processes: int = 1
    #: Run a stdio server under bubblewrap (gateway/sandbox.py), seeing only these host paths
    #: besides /usr and a minimal /etc. ``None`` (the key absent): the Gateway's
    #: ``sandbox_default`` decides (the product: on unless ``MCPEXEC_SANDBOX=none``).
    sandbox: bool | None = None
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    #: ``limits``: memory and processes of the server's whole tree (the domain's confinement
    #: enforces them: a cgroup leaf, rlimits); ``None`` fields take the confinement's defaults.
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __repr__(self) -> str:  # env and headers may carry resolved secrets
        return f"ServerConfig(name={self.name!r}, transport={self.transport!r})"


@dataclass(frozen=True)
class ConfigProblem:
    """One refused entry: ``file``, ``server`` (or ``""`` for the file itself), ``field``."""

    file: str
    server: str
    field: str
    message: str

    def error(self) -> GatewayConfigError:
        where = f"server '{self.server}', " if self.server else ""
        return GatewayConfigError(
            f"{self.file}: {where}{self.field}: {self.message}",
            file=self.file,
            server=self.server,
            field=self.field,
        )


@dataclass(frozen=True)
class GatewayConfig:
    servers: Mapping[str, ServerConfig] = field(default_factory=dict)
    problems: tuple[ConfigProblem, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class ConfigDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _sub(value: str, where: str, secrets: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in secrets:
            raise _Bad(where, f"references secret ${{{name}}}, which is not defined")
        return secrets[name]

    return _SECRET.sub(one, value)


def _str(entry: Mapping[str, Any], key: str, secrets: Mapping[str, str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Bad(key, "must be a non-empty string")
    return _sub(value, key, secrets)


def _str_map(entry: Mapping[str, Any], key: str, secrets: Mapping[str, str]) -> dict[str, str]:
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise _Bad(key, "must be an object of strings")
    out = {}
    for k, v in value.items():
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise _Bad(f"{key}.{k}", "must be a string")
        out[str(k)] = _sub(str(v), f"{key}.{k}", secrets)
    return out


def _number(entry: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value <= hi:
        raise _Bad(key, f"must be a number greater than {lo:g} and at most {hi:g}")
    return float(value)


def _int(entry: Mapping[str, Any], key: str, default: int, hi: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise _Bad(key, f"must be an integer from 1 to {hi}")
    return value


def _bool(entry: Mapping[str, Any], key: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise _Bad(key, "must be true or false")
    return value


def _globs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad(where, "must be a list of tool names or globs")
    return tuple(value)


def _tools(entry: Mapping[str, Any]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    tools = entry.get("tools")
    if tools is None:
        return None, ()
    if isinstance(tools, list):  # a bare list is an allow list
        return _globs(tools, "tools"), ()
    if not isinstance(tools, dict) or set(tools) - {"allow", "deny"}:
        raise _Bad("tools", 'must be {"allow": [...], "deny": [...]} or a list')
    allow = _globs(tools["allow"], "tools.allow") if "allow" in tools else None
    deny = _globs(tools["deny"], "tools.deny") if "deny" in tools else ()
    return allow, deny


def _paths(entry: Mapping[str, Any], key: str, secrets: Mapping[str, str]) -> tuple[str, ...]:
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise _Bad(key, "must be a list of absolute paths")
    paths = tuple(_sub(p, f"{key}[{i}]", secrets) for i, p in enumerate(value))
    for i, path in enumerate(paths):
        if not path.startswith("/") or "\0" in path or "/../" in f"{path}/":
            raise _Bad(f"{key}[{i}]", "must be an absolute path without '..'")
    return paths


def _limits(entry: Mapping[str, Any]) -> ServerLimits:
    value = entry.get("limits")
    if value is None:
        return ServerLimits()
    if not isinstance(value, dict):
        raise _Bad("limits", 'must be an object such as {"memory_mb": 512, "pids": 64}')
    unknown = sorted(set(value) - set(_LIMIT_RANGES))
    if unknown:
        known = ", ".join(_LIMIT_RANGES)
        raise _Bad(f"limits.{unknown[0]}", f"is not a known limit ({known})")
    out: dict[str, int] = {}
    for key, (lo, hi) in _LIMIT_RANGES.items():
        if key in value:
            got = value[key]
            if isinstance(got, bool) or not isinstance(got, int) or not lo <= got <= hi:
                raise _Bad(f"limits.{key}", f"must be an integer from {lo} to {hi}")
            out[key] = got
    return ServerLimits(**out)


def _sandbox(entry: Mapping[str, Any]) -> bool | None:
    return None if "sandbox" not in entry else _bool(entry, "sandbox", False)


def _start(entry: Mapping[str, Any]) -> bool:
    if "eager" in entry:
        return _bool(entry, "eager", False)
    start = entry.get("start", "lazy")
    if start not in ("eager", "lazy"):
        raise _Bad("start", 'must be "eager" or "lazy"')
    return bool(start == "eager")


def parse_server(name: str, entry: Any, secrets: Mapping[str, str]) -> ServerConfig:
    """One server entry; raises ``_Bad`` (internal) naming the field."""
    if not isinstance(entry, dict):
        raise _Bad("(entry)", "must be an object")
    if not _NAME.match(name):
        raise _Bad("name", "must be 1-64 letters, digits, '_' or '-'")
    if name in RESERVED:
        raise _Bad("name", f"'{name}' is the built-in server's name")
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise _Bad(unknown[0], "is not a known key")
    kind = str(entry.get("type") or entry.get("transport") or "").lower()
    if kind in _HTTP_TYPES or (not kind and "url" in entry and "command" not in entry):
        transport: Literal["stdio", "http"] = "http"
        url = _str(entry, "url", secrets)
        if url is None or not url.startswith(("http://", "https://")):
            raise _Bad("url", "must be an http:// or https:// URL")
    elif kind in ("", "stdio"):
        transport, url = "stdio", None
        if _str(entry, "command", secrets) is None:
            raise _Bad("command", "is required for a stdio server")
    else:
        raise _Bad("type", f"'{kind}' is not a transport (stdio, http)")
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _Bad("args", "must be a list of strings")
    timeout_key = "timeout_s" if "timeout_s" in entry else "timeout"
    timeout_s = _number({timeout_key: entry.get(timeout_key, 60.0)}, timeout_key, 60.0, 0, 86400)
    allow, deny = _tools(entry)
    enabled = _bool(entry, "enabled", True) and not _bool(entry, "disabled", False)
    return ServerConfig(
        name=name,
        transport=transport,
        command=_str(entry, "command", secrets),
        args=tuple(_sub(a, f"args[{i}]", secrets) for i, a in enumerate(args)),
        env=_str_map(entry, "env", secrets),
        cwd=_str(entry, "cwd", secrets),
        url=url,
        headers=_str_map(entry, "headers", secrets),
        timeout_s=timeout_s,
        max_total_s=_number(entry, "max_total_s", max(600.0, timeout_s), 0, 7 * 86400),
        max_concurrency=_int(entry, "max_concurrency", 8, 1024),
        startup_timeout_s=_number(entry, "startup_timeout_s", 30.0, 0, 3600),
        enabled=enabled,
        tools_allow=allow,
        tools_deny=deny,
        network=_bool(entry, "network", False),
        eager=_start(entry),
        processes=_int(entry, "processes", 1, 64),
        sandbox=_sandbox(entry),
        read_only=_paths(entry, "read_only", secrets),
        writable=_paths(entry, "writable", secrets),
        limits=_limits(entry),
    )


def _entries(data: Any, source: str) -> tuple[list[tuple[str, Any]], list[ConfigProblem]]:
    if not isinstance(data, dict):
        return [], [ConfigProblem(source, "", "(file)", "must be a JSON object")]
    entries: list[tuple[str, Any]] = []
    problems: list[ConfigProblem] = []
    if "mcpServers" in data:
        servers = data["mcpServers"]
        if not isinstance(servers, dict):
            return [], [ConfigProblem(source, "", "mcpServers", "must be an object")]
        entries.extend(servers.items())
    if "servers" in data:
        servers = data["servers"]
        if isinstance(servers, dict):  # VS Code's mcp.json: "servers": {NAME: {...}}
            entries.extend(servers.items())
        elif isinstance(servers, list):
            for i, entry in enumerate(servers):
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not name:
                    problems.append(ConfigProblem(source, f"#{i}", "name", "is required"))
                    continue
                entries.append((name, {k: v for k, v in entry.items() if k != "name"}))
        else:
            problems.append(ConfigProblem(source, "", "servers", "must be a list or an object"))
    if "mcpServers" not in data and "servers" not in data:
        problems.append(
            ConfigProblem(source, "", "(file)", 'has neither "mcpServers" nor "servers"')
        )
    return entries, problems


def parse_config(data: Any, source: str, secrets: Mapping[str, str] | None = None) -> GatewayConfig:
    """The servers of already-decoded JSON ``data``; ``source`` names it in problems."""
    entries, problems = _entries(data, source)
    servers: dict[str, ServerConfig] = {}
    for name, entry in entries:
        if name in servers:
            problems.append(ConfigProblem(source, name, "name", "is defined twice"))
            continue
        try:
            servers[name] = parse_server(name, entry, secrets or {})
        except _Bad as bad:
            problems.append(ConfigProblem(source, name, bad.field, bad.message))
    return GatewayConfig(servers=servers, problems=tuple(problems), source=source)


def load_config(path: str | Path, secrets: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read the file at ``path``. An unreadable file or bad JSON raises
    :class:`GatewayConfigError`; bad server entries are returned as ``problems``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayConfigError(
            f"{source}: cannot be read ({type(exc).__name__})", file=source, field="(file)"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GatewayConfigError(
            f"{source}: not valid JSON ({exc})", file=source, field="(file)"
        ) from None
    return parse_config(data, source, secrets)


def diff_configs(old: GatewayConfig, new: GatewayConfig) -> ConfigDiff:
    """Which servers a reload adds, removes, restarts (any field changed) or leaves alone."""
    before, after = old.servers, new.servers
    return ConfigDiff(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=tuple(sorted(n for n in set(before) & set(after) if before[n] != after[n])),
        unchanged=tuple(sorted(n for n in set(before) & set(after) if before[n] == after[n])),
    )
