"""The ``mcpexec`` command line: ``serve`` and ``worker`` run the engine; the rest talk to a
server through ``mcpexec.client``. Tables for people, ``--json`` for scripts."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mcpexec import __version__
from mcpexec.cli_common import PRIORITY, log_format_option, log_level_option
from mcpexec.errors import McpexecError

if TYPE_CHECKING:
    from mcpexec.client import Client

# Imports of httpx, pydantic and the engine are local to the commands that need them: `--help`
# and the client commands start in a fraction of the time (docs/benchmarks.md).

EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130


def _client(ctx: click.Context) -> Client:
    from mcpexec.client import Client

    obj: dict[str, Any] = ctx.ensure_object(dict)
    return Client.from_env(url=obj.get("url"), token=obj.get("token"))


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


class _Cli(click.Group):
    """Turns domain errors into one clear line and exit code 1 (2 for usage errors)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except McpexecError as exc:
            message = str(exc)
            hint = getattr(exc, "token_hint", "")
            if getattr(exc, "status", None) == 401 and hint:
                message += f" (no token found: {hint})"
            click.echo(f"mcpexec: {message}", err=True)
            sys.exit(1)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MCPEXEC_URL", help="Server URL (default http://127.0.0.1:8002).")
@click.option(
    "--token", envvar="MCPEXEC_TOKEN", help="Bearer token (default: $MCPEXEC_HOME/token)."
)
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    """mcpexec: durable, isolated runs for AI agents and operators."""
    ctx.ensure_object(dict).update(url=url, token=token)


@main.command()
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
def doctor(home: Path | None) -> None:
    """Check the sandbox layers this host offers and the mode serve would run in."""
    from mcpexec.executor.probe import doctor_report
    from mcpexec.settings import load_settings

    settings = load_settings(home=home)
    click.echo(f"configured mode: {settings.sandbox} (MCPEXEC_SANDBOX)")
    lines, ok = doctor_report(settings.sandbox, settings.sandbox_uid, settings.sandbox_gid)
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


# -- engine --------------------------------------------------------------------------------------
@main.command()
@click.option("--host", help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8002).")
@click.option("--workers", type=int, help="Worker slots in this process (default 4).")
@click.option(
    "--no-workers",
    is_flag=True,
    help="Run no workers here (API, MCP, scheduler, reaper): `mcpexec worker` processes "
    "sharing the store (MCPEXEC_DATABASE_URL) execute the runs.",
)
@click.option(
    "--worker-labels",
    help="Labels of this process's workers, comma-separated (MCPEXEC_WORKER_LABELS).",
)
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
@log_level_option
@log_format_option
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also watch this spool directory (pending/ → completed/ or failed/; docs/spool.md).",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    no_workers: bool,
    worker_labels: str | None,
    home: Path | None,
    log_level: str | None,
    log_format: str | None,
    spool: Path | None,
) -> None:
    """Run the server: REST API, MCP, workers and housekeeping in one process."""
    from mcpexec.serving import run_server

    with _startup_errors():
        run_server(
            host=host,
            port=port,
            workers=0 if no_workers else workers,
            worker_labels=worker_labels,
            home=home,
            log_level=log_level,
            log_format=log_format,
            spool=spool,
        )


@main.command()
@click.option("--workers", type=int, help="Worker slots (default 4).")
@click.option(
    "--labels",
    help="This worker's labels, comma-separated: it also runs the runs asking for them "
    "(worker_labels; MCPEXEC_WORKER_LABELS).",
)
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
@log_level_option
@log_format_option
def worker(
    workers: int | None,
    labels: str | None,
    home: Path | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run workers alone against the store (MCPEXEC_DATABASE_URL, else the one in
    $MCPEXEC_HOME), no HTTP: as many worker processes on as many machines as wanted."""
    from mcpexec.serving import run_worker

    with _startup_errors():
        run_worker(
            workers=workers,
            worker_labels=labels,
            home=home,
            log_level=log_level,
            log_format=log_format,
        )


@main.command()
@click.option("--workers", type=int, help="Worker slots in this process (default 4).")
@click.option("--no-worker", is_flag=True, help="Run no workers: a serve/worker executes runs.")
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
@click.option("--log-level", default="warning", show_default=True, help="Logs go to stderr.")
@click.option("--print-config", is_flag=True, help="Print a client config (mcpServers JSON).")
@click.option(
    "--tenant", default="default", show_default=True, help="Act as this tenant's operator."
)
def mcp(
    workers: int | None,
    no_worker: bool,
    home: Path | None,
    log_level: str,
    print_config: bool,
    tenant: str,
) -> None:
    """Serve MCP over stdio on the store in $MCPEXEC_HOME (stdout is protocol only); the
    caller is the operator of --tenant."""
    from mcpexec.mcp_server.stdio import client_config, run_stdio
    from mcpexec.settings import load_settings

    with _startup_errors():
        settings = load_settings(workers=workers, home=home)
        if print_config:
            click.echo(client_config(settings.home))
            return
        run_stdio(
            settings,
            workers=0 if no_worker else settings.workers,
            log_level=log_level,
            tenant=tenant,
        )


@contextlib.contextmanager
def _startup_errors() -> Iterator[None]:
    """A server that cannot start says why in one line (file, key, fix), not a traceback."""
    from mcpexec.errors import SandboxUnavailable, StoreError

    try:
        yield
    except (SandboxUnavailable, StoreError) as exc:
        click.echo(f"mcpexec: cannot start: {exc}", err=True)
        sys.exit(1)


@main.group()
def db() -> None:
    """The store's schema (MCPEXEC_DATABASE_URL, else the SQLite file in $MCPEXEC_HOME)."""


@db.command("migrate")
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
def db_migrate(home: Path | None) -> None:
    """Apply the pending schema migrations (idempotent; refuses a database newer than this
    mcpexec). serve and worker also migrate when they start; run this first when several
    processes are upgraded at once."""
    from mcpexec.serving import run_migrate

    with _startup_errors():
        click.echo(run_migrate(home=home))


# -- submitting ----------------------------------------------------------------------------------
def _key_values(items: tuple[str, ...], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        result[key] = value
    return result


def _inputs(items: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=@path`` reads a file (sent as base64), ``NAME=text`` sends the text."""
    result: dict[str, Any] = {}
    for name, value in _key_values(items, "--input").items():
        if value.startswith("@"):
            data = Path(value[1:]).read_bytes()
            result[name] = {"content": base64.b64encode(data).decode(), "base64": True}
        else:
            result[name] = value
    return result


def _build_spec(opts: dict[str, Any], command: tuple[str, ...]) -> dict[str, Any]:  # noqa: PLR0912
    spec: dict[str, Any] = {}
    given = [bool(command), opts["shell"] is not None, opts["script"] is not None]
    if sum(given) > 1:
        names = ("a command after '--'", "--shell", "--script")
        named = [n for n, g in zip(names, given, strict=True) if g]
        raise click.UsageError(f"{' and '.join(named)} are alternatives: give only one")
    if sum(given) != 1:
        raise click.UsageError("give a command after '--', or --shell TEXT, or --script FILE")
    if command:
        spec["command"] = list(command)
    elif opts["shell"] is not None:
        spec["shell"] = opts["shell"]
    else:
        path: Path = opts["script"]
        language = opts["language"] or {".py": "python", ".js": "node", ".bash": "bash"}.get(
            path.suffix, "sh"
        )
        spec["script"] = {"language": language, "source": path.read_text()}
    if opts["timeout"] is not None:
        spec["timeout_s"] = opts["timeout"]
    if opts["retries"] is not None:
        retry: dict[str, Any] = {"max_attempts": opts["retries"] + 1}
        if opts["retry_delay"] is not None:
            retry["delay_s"] = opts["retry_delay"]
        if opts["backoff"] is not None:
            retry["backoff"] = opts["backoff"]
        spec["retry"] = retry
    elif opts["retry_delay"] is not None or opts["backoff"] is not None:
        raise click.UsageError("--retry-delay and --backoff need --retries N")
    if opts["priority"] is not None:
        spec["priority"] = opts["priority"]
    if opts["delay"] is not None:
        spec["run_at"] = (datetime.now(UTC) + timedelta(seconds=opts["delay"])).isoformat()
    if opts["run_at"] is not None:
        spec["run_at"] = opts["run_at"]
    limit_names = ("cpu_s", "memory_mb", "pids", "disk_mb", "max_output_bytes")
    limits = {k: opts[k] for k in limit_names if opts[k] is not None}
    if limits:
        spec["limits"] = limits
    if opts["env"]:
        spec["env"] = _key_values(opts["env"], "--env")
    if opts["label"]:
        spec["labels"] = _key_values(opts["label"], "--label")
    if opts["worker_label"]:
        spec["worker_labels"] = list(opts["worker_label"])
    if opts["input"]:
        spec["inputs"] = _inputs(opts["input"])
    if opts["network"]:
        spec["network"] = True
    if opts["secret"]:
        spec["secrets"] = list(opts["secret"])
    return spec


def _notify(opts: dict[str, Any]) -> dict[str, Any] | None:
    """``--notify-webhook URL [--notify-on completed,failed]`` as the request's ``notify``."""
    if opts["notify_webhook"] is None:
        if opts["notify_on"] is not None:
            raise click.UsageError("--notify-on needs --notify-webhook URL")
        return None
    notify: dict[str, Any] = {"webhook": opts["notify_webhook"]}
    if opts["notify_on"] is not None:
        notify["on"] = [s.strip() for s in opts["notify_on"].split(",") if s.strip()]
    return notify


def _submit_options(f: Any) -> Any:
    options = [
        click.option("--shell", help="Run this string with /bin/sh -c."),
        click.option("--script", type=click.Path(exists=True, path_type=Path), help="Script file."),
        click.option("--language", type=click.Choice(["python", "bash", "sh", "node"])),
        click.option("--timeout", type=float, help="Wall-clock limit in seconds."),
        click.option("--retries", type=click.IntRange(0, 99), help="Retry up to N times."),
        click.option("--retry-delay", type=float, help="Seconds before the first retry."),
        click.option(
            "--backoff",
            type=click.Choice(["fixed", "exponential"]),
            help="Delay between retries: fixed, or doubling (default exponential).",
        ),
        click.option("--priority", type=PRIORITY, help="Integer, or low/normal/high."),
        click.option("--delay", type=float, help="Start no sooner than this many seconds."),
        click.option("--run-at", help="Start no sooner than this ISO 8601 time."),
        click.option("--env", multiple=True, help="KEY=VALUE for the task (repeatable)."),
        click.option("--label", multiple=True, help="KEY=VALUE label (repeatable)."),
        click.option(
            "--worker-label",
            multiple=True,
            help="Only a worker with this label runs it (repeatable: all of them).",
        ),
        click.option("--input", multiple=True, help="NAME=text or NAME=@file (repeatable)."),
        click.option("--cpu-s", type=int, help="CPU-seconds limit."),
        click.option("--memory-mb", type=int, help="Memory limit in MiB (cgroup in the sandbox)."),
        click.option("--pids", type=int, help="Process/thread limit (cgroup pids.max)."),
        click.option("--disk-mb", type=int, help="Workdir size limit in MiB."),
        click.option("--network", is_flag=True, help="Allow network access (sandbox)."),
        click.option("--secret", multiple=True, help="NAME of a server secret (repeatable)."),
        click.option("--max-output-bytes", type=int, help="Output cap per stream."),
        click.option("--idempotency-key", help="Submitting twice with one key gives one run."),
        click.option("--task", help="Run a defined task: NAME or NAME@VERSION."),
        click.option("--param", multiple=True, help="NAME=VALUE for --task (repeatable)."),
        click.option("--notify-webhook", metavar="URL", help="POST here (signed) when it ends."),
        click.option(
            "--notify-on",
            metavar="STATUSES",
            help="Comma-separated: completed, failed, cancelled (default completed,failed).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def exit_code_for(run: dict[str, Any]) -> int:
    """The exit code of ``mcpexec run``: the task's own, 124 on timeout, 130 on cancel."""
    if run["status"] == "completed":
        return 0
    failure = run.get("failure") or {}
    kind = failure.get("kind")
    if run["status"] == "cancelled" or kind == "cancelled":
        return EXIT_CANCELLED
    if kind == "timeout":
        return EXIT_TIMEOUT
    if run.get("exit_code") is not None:
        return int(run["exit_code"])
    return 1


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--detach", "-d", is_flag=True, help="Print the run id and return at once.")
@_submit_options
@click.pass_context
def run(
    ctx: click.Context, /, detach: bool, as_json: bool, command: tuple[str, ...], **opts: Any
) -> None:
    """Submit a run and stream its output; exit with its exit code (124 timeout, 130 cancel).

    Example: mcpexec run -- python3 -c 'print(6*7)'
    """
    spec = None if opts["task"] else _build_spec(opts, command)
    with _client(ctx) as client:
        if spec is None:  # --task NAME --param k=v (issue 11)
            from mcpexec.cli_tasks import task_request

            spec = task_request(client, opts, command)
        notify = _notify(opts)
        if notify is not None:
            spec["notify"] = notify
        submitted = client.submit(spec, idempotency_key=opts["idempotency_key"])
        if detach:
            _emit_json(submitted) if as_json else click.echo(submitted["id"])
            return
        final = _stream(client, submitted["id"])
    if as_json:
        _emit_json(final)
    elif final["status"] != "completed" and (final.get("failure") or {}).get("kind") != "exit_code":
        # A task's own non-zero exit speaks through the exit code and its stderr; anything else
        # (not found, timeout, limits, cancel) would otherwise end silently.
        click.echo(f"mcpexec: {describe_failure(final)}", err=True)
    sys.exit(exit_code_for(final))


def describe_failure(run: dict[str, Any]) -> str:
    """One line for a run that did not complete: its status, failure kind and message."""
    failure = run.get("failure") or {}
    kind = failure.get("kind") or run["status"]
    text = f"run {run['id']} {run['status']}: {kind}"
    if failure.get("message"):
        text += f": {failure['message']}"
    return text


def _stream(client: Client, run_id: str) -> dict[str, Any]:
    """Copy the run's output to our stdout/stderr until it ends; Ctrl-C cancels the run."""

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for event, data in client.follow(run_id):
            if event == "output":
                out = sys.stdout if data["stream"] == "stdout" else sys.stderr
                out.write(data["data"])
                out.flush()
            else:
                return data
    except KeyboardInterrupt:
        client.cancel(run_id)
        click.echo(f"\nmcpexec: cancelled run {run_id}", err=True)
        return client.wait(run_id, timeout_s=30)
    return client.get(run_id)


@main.command()
@_submit_options
@click.pass_context
def submit(ctx: click.Context, /, as_json: bool, command: tuple[str, ...], **opts: Any) -> None:
    """Submit a run and print its id (same options as 'run')."""
    ctx.invoke(run, detach=True, as_json=as_json, command=command, **opts)


# -- inspecting ----------------------------------------------------------------------------------
@main.command()
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(["pending", "running", "completed", "failed", "cancelled"]),
)
@click.option("--label", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--created-after", help="Only runs created at or after this ISO 8601 time.")
@click.option("--created-before", help="Only runs created before this ISO 8601 time.")
@click.option("--task", help="Only runs of this task.")
@click.option("--tool", help="Only tool runs of this tool (SERVER.TOOL).")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--cursor", help="Continue from a previous page.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(
    ctx: click.Context,
    status: tuple[str, ...],
    label: tuple[str, ...],
    created_after: str | None,
    created_before: str | None,
    task: str | None,
    tool: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    from mcpexec.display import print_runs_table

    with _client(ctx) as client:
        page = client.list_runs(
            status=list(status) or None,
            label=list(label) or None,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
            task=task,
            tool=tool,
        )
    if as_json:
        _emit_json(page)
        return
    print_runs_table(page["runs"])
    if page["next_cursor"]:
        click.echo(f"(more: --cursor {page['next_cursor']})")


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run: status, attempts, progress, result."""
    from mcpexec.display import print_run

    with _client(ctx) as client:
        data = client.get(run_id)
        attempts = client.attempts(run_id)
    if as_json:
        _emit_json({**data, "attempt_list": attempts})
        return
    print_run(data, attempts)


@main.command()
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Follow live output until the run ends.")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), help="Only this stream.")
@click.pass_context
def logs(ctx: click.Context, run_id: str, follow: bool, stream: str | None) -> None:
    """Print a run's output."""
    with _client(ctx) as client:
        if follow:
            for event, data in client.follow(run_id, stream=stream):
                if event == "output":
                    out = sys.stdout if data["stream"] == "stdout" else sys.stderr
                    out.write(data["data"])
                    out.flush()
            return
        for name in [stream] if stream else ["stdout", "stderr"]:
            offset = 0
            out = sys.stdout if name == "stdout" else sys.stderr
            while True:
                page = client.logs(run_id, stream=name, offset=offset)
                out.write(page["data"])
                if page["next_offset"] == offset:
                    break
                offset = page["next_offset"]
            out.flush()


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Cancel a run: pending ones at once, running ones by killing their process tree."""
    with _client(ctx) as client:
        data = client.cancel(run_id)
    _emit_json(data) if as_json else click.echo(
        f"{data['id']} {data['status']}"
        + (" (cancel requested)" if data["status"] == "running" else "")
    )


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rerun(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Submit a new run with the same spec; print its id."""
    with _client(ctx) as client:
        data = client.rerun(run_id)
    _emit_json(data) if as_json else click.echo(data["id"])


@main.command()
@click.argument("run_id")
@click.option("--get", "name", help="Download this artifact.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to save it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def artifacts(
    ctx: click.Context, run_id: str, name: str | None, output: Path | None, as_json: bool
) -> None:
    """List a run's artifacts, or download one with --get NAME [-o PATH]."""
    with _client(ctx) as client:
        if name is None:
            items = client.artifacts(run_id)
            if as_json:
                _emit_json(items)
            elif not items:
                click.echo("no artifacts")
            else:
                click.echo(f"{'SIZE':>12}  {'SHA256':<12}  NAME")
                for item in items:
                    click.echo(f"{item['size']:>12}  {item['sha256'][:12]}  {item['name']}")
            return
        target = output or Path(name.rsplit("/", 1)[-1])
        if str(target) == "-":
            client.download(run_id, name, sys.stdout.buffer)
            return
        with target.open("wb") as out:
            size = client.download(run_id, name, out)
        click.echo(f"saved {name} ({size} bytes) to {target}", err=True)


# -- spool directory (mcpexec.spool.cli) -----------------------------------------------------------
def _register_spool() -> None:
    from mcpexec.spool.cli import spool

    main.add_command(spool)


_register_spool()


def _register_tasks() -> None:
    from mcpexec.cli_tasks import register

    register(main)


_register_tasks()  # tasks, schedules, scheduler (issue 11)


def _register_tenancy() -> None:
    from mcpexec.cli_tenancy import register

    register(main)


def _register_tools() -> None:
    from mcpexec.cli_tools import register

    register(main)


def _register_workflows() -> None:
    from mcpexec.cli_workflows import register

    register(main)


_register_tenancy()  # tenants, tokens, quota, audit (issue 10)
_register_workflows()  # workflows (issue 16)
_register_tools()  # tools, call, servers (issue 14)


def _register_events() -> None:
    from mcpexec.cli_events import register

    register(main)


_register_events()  # events (issue 17)


def _register_batch() -> None:
    from mcpexec.cli_batch import register

    register(main)


_register_batch()  # batch, status (issue 12)

if __name__ == "__main__":  # pragma: no cover
    main()
