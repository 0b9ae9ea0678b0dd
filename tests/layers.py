"""The layer rule of docs/architecture.md as a check (used by tests/unit/test_layers.py).

Every module of the package belongs to one layer; an import is allowed only along the arrows:

    pure      models, errors (and the package root),  → pure
              tasks, task_files, params, schedules, cron,
              aio, config_file
    config    settings                                → pure
    views     views (how runs look on the wire)       → pure
    plug-in   store/*, executor/*, gateway/*          → pure, config, its own package only
    domain    app, worker, reaper, retry, events,     → pure, config, plug-ins, domain
              scheduler, definitions, schedule_ops,
              tools_service, workflows/*
    entry     bootstrap, asgi, serving,               → anything (they assemble the process)
              mcp_server/stdio
    adapter   api/*, mcp_server/*, dashboard/*,       → pure, config, views, domain, its own
              cli (+ client, display, cli_tasks,        adapter; cli also entry points
              client_tasks, cli_tools), spool

Exceptions, by name: ``mcpexec doctor`` (cli) imports ``executor.probe`` to inspect the host
before any server or store exists; ``mcpexec spool status`` reads the spool directory itself.
``spool/cli.py`` belongs to the CLI (it starts the spool's entry point). A module in no layer
is itself a violation: a new module must be placed. Every import counts, also those inside
functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = "mcpexec"
SRC = Path(__file__).resolve().parent.parent / "src" / PACKAGE

PURE = {
    "mcpexec",
    "mcpexec.models",
    "mcpexec.errors",
    # Pure cores of task definitions and schedules (no I/O; issue 11).
    "mcpexec.tasks",
    "mcpexec.task_files",
    "mcpexec.params",
    "mcpexec.schedules",
    "mcpexec.cron",
    # The one Authorization-header parser REST and MCP share.
    "mcpexec.bearer",
    # Reading a request body up to a cap and replaying it (both HTTP adapters; ASGI types only).
    "mcpexec.asgi_body",
    # Where the files under $MCPEXEC_HOME are, and how a private one is written (stdlib only).
    "mcpexec.paths",
    # Log records as text or JSON lines with the run they concern (stdlib only; issue 17).
    "mcpexec.logfmt",
    # Roles, the access matrix and the fair pick across tenants (issue 10).
    "mcpexec.tenancy",
    # Workflow definitions and a workflow run's state (issue 16).
    "mcpexec.workflows.spec",
    "mcpexec.workflows.state",
    # Bounded waits that keep a cancellation (stdlib asyncio only).
    "mcpexec.aio",
    # The config file's formats and ${ENV} references (the settings layer uses it).
    "mcpexec.config_file",
    # Alert rules: the config's shape and what each rule decides (issue 17).
    "mcpexec.alert_rules",
}
DOMAIN = {
    "app",
    # Prometheus counters of the process and the exposition (issue 17).
    "metrics",
    "worker",
    "reaper",
    "retry",
    "events",
    # The durable event log as App operations (issue 17).
    "event_ops",
    "batch_ops",  # the batch submit (issue 12)
    # Hourly run history for the overview's charts: quantiles from the store's rollup (17).
    "history",
    # OpenTelemetry spans of runs and attempts; the W3C traceparent carried through (17).
    "tracing",
    # Webhook targets (SSRF), signatures and the durable delivery loop (issue 17).
    "webhooks",
    # The alert evaluation, once per store under a lease (issue 17).
    "alerts",
    "scheduler",
    # Task definitions and schedules as App operations (issue 11).
    "definitions",
    "schedule_ops",
    # Tenants, tokens, quotas and the audit log as App operations (issue 10).
    "tenant_ops",
    # Tools of downstream MCP servers as App operations (issue 14).
    "tools_service",
    # The cgroup leaf, limits and watchdog of the gateway's stdio servers (issue 14).
    "server_confinement",
    # The workflow engine, checkpoints, agent providers, workspaces (issue 16).
    "workflows",
}
ENTRY = {
    "mcpexec.bootstrap",
    "mcpexec.asgi",
    "mcpexec.serving",
    "mcpexec.mcp_server.stdio",
    "mcpexec.spool.standalone",
}
PLUGIN_PACKAGES = {"store", "executor", "gateway"}
#: Domain packages: every module in them is domain (but those placed in PURE).
DOMAIN_PACKAGES = {"workflows"}
ADAPTER_PACKAGES = {"api", "mcp_server", "dashboard", "spool"}
CLI_MODULES = {
    "cli",
    "client",
    "http_call",
    "display",
    "cli_tasks",
    "client_tasks",
    "cli_common",
    "cli_tenancy",
    "cli_tools",  # tools, call, servers (issue 14)
    "cli_workflows",  # workflows (issue 16)
    "cli_events",  # events (issue 17)
    "cli_batch",  # batch, status (issue 12)
    "client_workflows",
}
#: Command modules that live beside the adapter they start but belong to the CLI.
CLI_COMMAND_MODULES = {"mcpexec.spool.cli"}

#: (importer, imported): the only imports allowed against the arrows, each with its reason.
EXCEPTIONS = {
    ("mcpexec.cli", "mcpexec.executor.probe"): "doctor probes the host before any store exists",
    ("mcpexec.spool.cli", "mcpexec.spool.status"): "spool status reads the spool directory "
    "itself, with no server or store",
}

_ALLOWED = {
    "pure": {"pure"},
    "config": {"pure", "config"},
    "views": {"pure", "views"},
    "plugin": {"pure", "config"},  # + its own package (checked below)
    "domain": {"pure", "config", "plugin", "domain"},
    "adapter": {"pure", "config", "views", "domain"},  # + its own adapter (checked below)
}


def layer_of(module: str) -> tuple[str, str]:  # noqa: PLR0911 - one return per layer
    """``(layer, group)``: group names the plug-in or adapter package (empty otherwise)."""
    if module in PURE:
        return "pure", ""
    if module in ENTRY:
        return "entry", ""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    if module == "mcpexec.settings":
        return "config", ""
    if module == "mcpexec.views":
        return "views", ""
    if head in PLUGIN_PACKAGES:
        return "plugin", head
    if head in DOMAIN and (len(parts) == 2 or head in DOMAIN_PACKAGES):
        return "domain", ""
    if (head in CLI_MODULES and len(parts) == 2) or module in CLI_COMMAND_MODULES:
        return "adapter", "cli"
    if head in ADAPTER_PACKAGES:
        return "adapter", head
    return "unplaced", ""


def imports_of(module: str, source: str, is_package: bool = False) -> set[str]:
    """The ``mcpexec`` modules ``source`` imports (``from mcpexec import x`` counts as
    ``mcpexec.x``; relative imports are resolved against ``module``)."""
    found: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                target = ".".join(prefix + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            # "from a import b": b is a module of a, or a member of a (resolved in _known).
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _known(imported: str, modules: Iterable[str]) -> str | None:
    """``imported`` itself when it is a module, else the module it names a member of."""
    names = set(modules)
    while imported and imported not in names:
        imported = imported.rpartition(".")[0]
    return imported or None


def violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Every import against the arrows in ``sources`` (module → (source, is_package))."""
    problems: list[str] = []
    for module, (source, is_package) in sorted(sources.items()):
        layer, group = layer_of(module)
        if layer == "unplaced":
            problems.append(f"{module}: in no layer (place it in tests/layers.py)")
            continue
        for imported in sorted(imports_of(module, source, is_package)):
            target = _known(imported, sources)
            if target is None or target == module:
                continue
            if (module, target) in EXCEPTIONS or layer == "entry":
                continue
            their_layer, their_group = layer_of(target)
            if their_layer in _ALLOWED[layer]:
                continue
            if layer in ("plugin", "adapter") and their_layer == layer and their_group == group:
                continue
            if (layer, group, their_layer) == ("adapter", "cli", "entry"):
                continue  # `mcpexec serve|worker|mcp` start those processes
            problems.append(f"{module} ({layer}) imports {target} ({their_layer})")
    return sorted(set(problems))


def package_sources(root: Path = SRC) -> dict[str, tuple[str, bool]]:
    """Every module of the installed source tree: module → (source, is_package)."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        sources[".".join(parts)] = (path.read_text(), is_package)
    return sources
