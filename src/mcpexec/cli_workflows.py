"""``mcpexec workflows define|start|status|list|approve|pause|resume|skip|retry|rollback|
mark-done|cancel|events`` (issue 16), over the REST API. Tables for people, ``--json`` for
scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mcpexec.cli_common import client_of, emit_json, print_table

if TYPE_CHECKING:
    from mcpexec.client_workflows import WorkflowsApi


def _api(ctx: click.Context) -> WorkflowsApi:
    from mcpexec.client_workflows import WorkflowsApi

    return WorkflowsApi(client_of(ctx))


@click.group()
def workflows() -> None:
    """Workflows: DAGs of steps (runs, agents, gates) with checkpoints and rollback."""


@workflows.command("define")
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
def define(ctx: click.Context, path: Path, as_json: bool) -> None:
    """Define a workflow from a file: a new version if the content changed."""
    from mcpexec.task_files import detect_format

    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    api = _api(ctx)
    with api.client:
        found = api.define(text, detect_format(text, path.name))
    if as_json:
        emit_json(found)
        return
    state = "created" if found["created"] else "unchanged"
    click.echo(f"{found['name']}@{found['version']} ({state}) {found['content_hash'][:19]}")


@workflows.command("list")
@click.option("--runs", "runs", is_flag=True, help="List workflow runs instead.")
@click.option("--status", multiple=True, help="With --runs: only these statuses.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_workflows(ctx: click.Context, runs: bool, status: tuple[str, ...], as_json: bool) -> None:
    """List workflows (their latest versions), or with --runs the workflow runs."""
    api = _api(ctx)
    with api.client:
        found = api.runs(status=status) if runs else api.workflows()
    if as_json:
        emit_json(found)
        return
    if runs:
        rows = [[r["id"], f"{r['workflow']}@{r['version']}", r["status"], _at(r)] for r in found]
        print_table(rows, ["ID", "WORKFLOW", "STATUS", "CURRENT"])
    else:
        rows = [[w["name"], str(w["version"]), str(len(w["definition"]["steps"]))] for w in found]
        print_table(rows, ["NAME", "VERSION", "STEPS"])


def _at(run: dict[str, Any]) -> str:
    """The steps running or waiting now."""
    now = [n for n, s in run["steps"].items() if s["status"] in ("running", "waiting")]
    return ",".join(now) or "-"


@workflows.command("start")
@click.argument("workflow")
@click.option("-p", "--param", "pairs", multiple=True, help="NAME=VALUE (typed by the schema).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def start(ctx: click.Context, workflow: str, pairs: tuple[str, ...], as_json: bool) -> None:
    """Start a run of WORKFLOW (NAME or NAME@VERSION)."""
    from mcpexec.params import parse_param_args

    api = _api(ctx)
    with api.client:
        definition = api.get(workflow.partition("@")[0])["definition"]
        params = parse_param_args(pairs, definition.get("params", {}))
        found = api.start(workflow, params)
    if as_json:
        emit_json(found)
        return
    click.echo(found["id"])


@workflows.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """A workflow run's status and its steps."""
    api = _api(ctx)
    with api.client:
        found = api.run(run_id)
    if as_json:
        emit_json(found)
        return
    paused = " (paused)" if found["paused"] else ""
    click.echo(f"{found['id']}  {found['workflow']}@{found['version']}  {found['status']}{paused}")
    if found["error"]:
        click.echo(f"error: {found['error']}")
    rows = [
        [name, s["status"], s["run_id"] or "-", "yes" if s["checkpoint"] is not None else "-"]
        for name, s in found["steps"].items()
    ]
    print_table(rows, ["STEP", "STATUS", "RUN", "CHECKPOINT"])


@workflows.command("events")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def events(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """A workflow run's events (JSON lines with --json)."""
    import json

    api = _api(ctx)
    with api.client:
        found = api.events(run_id)
    for event in found:
        if as_json:
            click.echo(json.dumps(event, sort_keys=True))
        else:
            step = f" {event['step']}" if event["step"] else ""
            click.echo(f"{event['at']}  {event['kind']}{step}  {json.dumps(event['detail'])}")


def _action(name: str, help_text: str, needs_step: bool | None) -> None:
    def command(ctx: click.Context, run_id: str, as_json: bool, step: str | None = None) -> None:
        api = _api(ctx)
        with api.client:
            found = api.act(run_id, name, step)
        if as_json:
            emit_json(found)
        else:
            click.echo(f"{found['id']}  {found['status']}")

    command.__doc__ = help_text
    decorated = click.option("--json", "as_json", is_flag=True)(click.pass_context(command))
    if needs_step is not None:  # decorators apply inside out: STEP after RUN_ID
        decorated = click.argument("step", required=needs_step)(decorated)
    decorated = click.argument("run_id")(decorated)
    workflows.command(name)(decorated)


_action("pause", "Pause: no new step starts (checkpoints are still tracked).", None)
_action("resume", "Resume a paused workflow run.", None)
_action("approve", "Approve a manual gate (STEP: needed when several wait).", False)
_action("skip", "Skip a step (a running one is stopped).", True)
_action("retry", "Run a step again (also of a failed workflow run).", True)
_action("rollback", "Roll back to before STEP (its rollback runs) and pause.", True)
_action("mark-done", "A person finished STEP and wrote its checkpoint: validate, go on.", True)
_action("cancel", "Cancel the workflow run and stop its running steps.", None)


def register(main: click.Group) -> None:
    main.add_command(workflows)
