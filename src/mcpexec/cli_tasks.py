"""``mcpexec tasks …``, ``mcpexec schedules …``, ``mcpexec scheduler`` and the task part of
``mcpexec run --task NAME --param k=v`` (issue 11). Tables for people, ``--json`` for scripts.
Registered on the main group by :func:`register`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mcpexec.cli_common import (
    client_of,
    emit_json,
    log_format_option,
    log_level_option,
    print_table,
)

if TYPE_CHECKING:  # imported where used: every CLI start registers these commands
    from mcpexec.client import Client
    from mcpexec.client_tasks import TasksApi


def _tasks(client: Client) -> TasksApi:
    from mcpexec.client_tasks import TasksApi

    return TasksApi(client)


def _api(ctx: click.Context) -> TasksApi:
    return _tasks(client_of(ctx))


def _params(pairs: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    from mcpexec.params import parse_param_args

    return parse_param_args(pairs, schema)


def task_request(client: Client, opts: dict[str, Any], command: tuple[str, ...]) -> dict[str, Any]:
    """The body of ``POST /api/v1/runs`` for ``mcpexec run --task NAME[@V] --param k=v``:
    parameters typed by the task's schema (fetched), the run spec the task's own."""
    if command or opts.get("shell") is not None or opts.get("script") is not None:
        raise click.UsageError("--task runs a defined task: give no command, --shell or --script")
    ref: str = opts["task"]
    name, _, version = ref.partition("@")
    task = _tasks(client).get(name, int(version) if version.isdecimal() else None)
    schema = task["definition"].get("params", {})
    body: dict[str, Any] = {"task": ref, "params": _params(opts.get("param") or (), schema)}
    if opts.get("priority") is not None:
        body["priority"] = opts["priority"]
    if opts.get("label"):
        body["labels"] = dict(item.partition("=")[::2] for item in opts["label"])
    if opts.get("run_at") is not None:
        body["run_at"] = opts["run_at"]
    return body


# -- tasks ---------------------------------------------------------------------------------------
@click.group()
def tasks() -> None:
    """Define versioned tasks and look at them."""


@tasks.command("define")
@click.argument("name")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(allow_dash=True, path_type=Path),
    required=True,
    help="YAML or JSON file; - reads standard input.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def define(ctx: click.Context, name: str, path: Path, as_json: bool) -> None:
    """Define NAME from a YAML or JSON file: a new version if the content changed."""
    from mcpexec.task_files import detect_format

    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    with _api(ctx).client as client:
        found = _tasks(client).define(name, text, detect_format(text, path.name))
    if as_json:
        emit_json(found)
        return
    state = "created" if found["created"] else "unchanged"
    click.echo(f"{found['name']}@{found['version']} ({state}) {found['content_hash'][:19]}")


@tasks.command("show")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(1), help="This version (default latest).")
@click.option("--diff", nargs=2, type=click.IntRange(1), help="Diff two versions: --diff 1 2.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(
    ctx: click.Context, name: str, version: int | None, diff: tuple[int, int] | None, as_json: bool
) -> None:
    """Show a task's definition (YAML), or the diff of two versions."""
    with _api(ctx).client as client:
        api = _tasks(client)
        if diff:
            lines = api.diff(name, *diff)
            emit_json({"diff": lines}) if as_json else click.echo(
                "\n".join(lines) or "(no difference)"
            )
            return
        found = api.get(name, version)
    if as_json:
        emit_json(found)
        return
    archived = " (archived)" if found["archived"] else ""
    click.echo(f"# {found['name']}@{found['version']}{archived} {found['content_hash']}")
    click.echo(found["yaml"], nl=False)


@tasks.command("list")
@click.option("--archived", is_flag=True, help="Include archived tasks.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_tasks(ctx: click.Context, archived: bool, as_json: bool) -> None:
    """List tasks (their latest versions)."""
    with _api(ctx).client as client:
        found = _tasks(client).tasks(archived)
    if as_json:
        emit_json(found)
        return
    rows = [
        [
            t["name"],
            str(t["version"]),
            t["tenant"],
            "yes" if t["archived"] else "",
            t["description"],
        ]
        for t in found
    ]
    print_table(rows, ["NAME", "VERSION", "TENANT", "ARCHIVED", "DESCRIPTION"])


@tasks.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def versions(ctx: click.Context, name: str, as_json: bool) -> None:
    """List every version of a task."""
    with _api(ctx).client as client:
        found = _tasks(client).versions(name)
    if as_json:
        emit_json(found)
        return
    rows = [[str(v["version"]), v["created_at"], v["owner"], v["content_hash"][:19]] for v in found]
    print_table(rows, ["VERSION", "CREATED", "OWNER", "HASH"])


@tasks.command("archive")
@click.argument("name")
@click.pass_context
def archive(ctx: click.Context, name: str) -> None:
    """Archive a task: it runs no more; its versions and runs stay readable."""
    with _api(ctx).client as client:
        found = _tasks(client).archive(name)
    click.echo(f"{found['name']} archived (latest version {found['version']})")


# -- schedules -----------------------------------------------------------------------------------
@click.group()
def schedules() -> None:
    """Run tasks on a cron expression or an interval."""


def _spec_options(f: Any) -> Any:
    options = [
        click.option("--cron", help="Cron expression: 5 fields, 6 with seconds first, @daily."),
        click.option("--every", help="Interval: 30s, 5m, 1h30m, 2d."),
        click.option("--tz", "timezone", help="IANA time zone (default UTC)."),
        click.option(
            "--overlap", type=click.Choice(["skip", "buffer_one", "allow_all", "cancel_previous"])
        ),
        click.option("--catchup-window", "catchup_window_s", type=float, help="Seconds."),
        click.option("--jitter", "jitter_s", type=float, help="Delay each run up to S seconds."),
        click.option("--start-at", help="No fires before this ISO 8601 time."),
        click.option("--end-at", help="No fires after this ISO 8601 time."),
        click.option("--param", multiple=True, help="NAME=VALUE for the task (repeatable)."),
        click.option("--json", "as_json", is_flag=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_SPEC_KEYS = ("cron", "every", "timezone", "overlap", "catchup_window_s", "jitter_s")


def _spec_body(opts: dict[str, Any]) -> dict[str, Any]:
    body = {k: opts[k] for k in (*_SPEC_KEYS, "start_at", "end_at") if opts.get(k) is not None}
    return body


def _print_schedule(found: dict[str, Any]) -> None:
    when = found.get("cron") or f"every {found.get('every')}"
    task = found["task"] + (f"@{found['task_version']}" if found["task_version"] else "")
    paused = " (paused)" if found["paused"] else ""
    click.echo(f"{found['id']}  {task}  {when}  {found['timezone']}  overlap={found['overlap']}")
    click.echo(f"  next fire:  {found['next_fire_at'] or '-'}{paused}")
    last = found["last_fire_at"] or "-"
    click.echo(f"  last fire:  {last} {found['last_outcome'] or ''} {found['last_run_id'] or ''}")
    click.echo(f"  missed: {found['missed_count']}  skipped: {found['skipped_count']}")


@schedules.command("create")
@click.argument("task")
@_spec_options
@click.pass_context
def create(ctx: click.Context, /, task: str, as_json: bool, **opts: Any) -> None:
    """Schedule TASK (NAME follows the latest version, NAME@V pins one)."""
    with _api(ctx).client as client:
        api = _tasks(client)
        name, _, version = task.partition("@")
        schema = api.get(name, int(version) if version.isdecimal() else None)["definition"]
        params = _params(opts.pop("param"), schema.get("params", {}))
        found = api.create_schedule({"task": task, "params": params, **_spec_body(opts)})
    emit_json(found) if as_json else _print_schedule(found)


@schedules.command("update")
@click.argument("schedule_id")
@_spec_options
@click.option("--pause/--resume", "paused", default=None)
@click.pass_context
def update(ctx: click.Context, /, schedule_id: str, as_json: bool, **opts: Any) -> None:
    """Change a schedule (takes effect at once)."""
    changes = _spec_body(opts)
    if opts.get("paused") is not None:
        changes["paused"] = opts["paused"]
    with _api(ctx).client as client:
        api = _tasks(client)
        if opts.get("param"):
            current = api.schedule(schedule_id)
            ref = current["task"]
            schema = api.get(ref, current["task_version"])["definition"].get("params", {})
            changes["params"] = _params(opts["param"], schema)
        found = api.update_schedule(schedule_id, changes)
    emit_json(found) if as_json else _print_schedule(found)


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_schedules(ctx: click.Context, as_json: bool) -> None:
    """List schedules with their next fire and last outcome."""
    with _api(ctx).client as client:
        found = _tasks(client).schedules()
    if as_json:
        emit_json(found)
        return
    rows = [
        [
            s["id"],
            s["task"] + (f"@{s['task_version']}" if s["task_version"] else ""),
            s.get("cron") or f"every {s.get('every')}",
            s["timezone"],
            "paused" if s["paused"] else (s["next_fire_at"] or "-"),
            s["last_outcome"] or "-",
            f"{s['missed_count']}/{s['skipped_count']}",
        ]
        for s in found
    ]
    print_table(rows, ["ID", "TASK", "WHEN", "ZONE", "NEXT FIRE", "LAST", "MISSED/SKIPPED"])


@schedules.command("show")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_schedule(ctx: click.Context, schedule_id: str, as_json: bool) -> None:
    """Show a schedule and its status."""
    with _api(ctx).client as client:
        found = _tasks(client).schedule(schedule_id)
    emit_json(found) if as_json else _print_schedule(found)


@schedules.command("next")
@click.argument("schedule_id")
@click.option("-n", "count", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def next_fires(ctx: click.Context, schedule_id: str, count: int, as_json: bool) -> None:
    """The next N fire times, in the schedule's zone."""
    with _api(ctx).client as client:
        found = _tasks(client).next_fires(schedule_id, count)
    if as_json:
        emit_json(found)
        return
    for when in found["next"]:
        click.echo(when)


@schedules.command("history")
@click.argument("schedule_id")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(ctx: click.Context, schedule_id: str, limit: int, as_json: bool) -> None:
    """Every fire: time, outcome, run id, status, duration."""
    with _api(ctx).client as client:
        found = _tasks(client).history(schedule_id, limit)
    if as_json:
        emit_json(found)
        return
    rows = [
        [
            f["scheduled_for"],
            f["outcome"],
            f["run_id"] or "-",
            f["status"] or "-",
            "-" if f["duration_s"] is None else f"{f['duration_s']:.3f}s",
        ]
        for f in found
    ]
    print_table(rows, ["SCHEDULED FOR", "OUTCOME", "RUN", "STATUS", "DURATION"])


def _action(name: str, doc: str) -> click.Command:
    @click.argument("schedule_id")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, schedule_id: str, as_json: bool) -> None:
        with _api(ctx).client as client:
            found = _tasks(client).schedule_action(schedule_id, name)
        if as_json:
            emit_json(found)
        elif name == "trigger":
            click.echo(found["id"])
        else:
            _print_schedule(found)

    command.__doc__ = doc
    return click.command(name)(command)


@schedules.command("delete")
@click.argument("schedule_id")
@click.pass_context
def delete(ctx: click.Context, schedule_id: str) -> None:
    """Delete a schedule (its runs stay)."""
    with _api(ctx).client as client:
        _tasks(client).delete_schedule(schedule_id)
    click.echo(f"{schedule_id} deleted")


for _name, _doc in (
    ("pause", "Pause a schedule: no fires, none counted missed."),
    ("resume", "Resume a schedule: fires from now on."),
    ("trigger", "Fire a schedule now (prints the run id)."),
):
    schedules.add_command(_action(_name, _doc))


@click.command("scheduler")
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
@log_level_option
@log_format_option
def scheduler(home: Path | None, log_level: str | None, log_format: str | None) -> None:
    """Run the schedule loop alone (serve runs one too; any number may share a store)."""
    from mcpexec.serving import run_scheduler

    run_scheduler(home=home, log_level=log_level, log_format=log_format)


def register(main: click.Group) -> None:
    for command in (tasks, schedules, scheduler):
        main.add_command(command)
