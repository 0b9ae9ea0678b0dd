"""``mcpexec batch FILE``: submit many runs from a JSON Lines file (one run request per line,
the body of ``POST /api/v1/runs``), up to 1,000 per transaction, a result line per run.
``mcpexec status ID...``: the status of many runs in one read (``GET /api/v1/runs?ids=``)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mcpexec.cli_common import client_of, emit_json, print_table
from mcpexec.errors import InvalidRequest

MAX_BATCH = 1000


def _read_specs(stream: Any, name: str) -> list[dict[str, Any]]:
    """The run requests of a JSON Lines file; blank lines are skipped. A line that is not a
    JSON object stops everything before anything is sent (``InvalidRequest``: one line)."""
    specs = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{name} line {number}: not JSON ({exc.msg}); nothing sent"
            raise InvalidRequest(message) from None
        if not isinstance(spec, dict):
            raise InvalidRequest(f"{name} line {number}: not a JSON object; nothing sent")
        specs.append(spec)
    return specs


def _result_line(result: dict[str, Any]) -> str:
    if "error" in result:
        error = result["error"]
        return f"{result['index']}\terror\t{error['code']}: {error['message']}"
    state = "created" if result["created"] else "replayed"
    return f"{result['index']}\t{state}\t{result['run']['id']}"


@click.command("batch")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--all-or-nothing",
    is_flag=True,
    help=f"Store nothing unless every run is accepted (at most {MAX_BATCH} runs).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    default=MAX_BATCH,
    show_default=True,
    help="Runs per request (each request is one transaction).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.pass_context
def batch(
    ctx: click.Context, file: Any, all_or_nothing: bool, batch_size: int, as_json: bool
) -> None:
    """Submit the runs of FILE (JSON Lines, '-' for stdin: one run request per line, as for
    POST /api/v1/runs) and print one line per run: INDEX, created/replayed/error, the run id
    or the error. Exits 1 if any run was refused (the others are stored)."""
    specs = _read_specs(file, file.name)
    if all_or_nothing and len(specs) > MAX_BATCH:
        raise InvalidRequest(
            f"--all-or-nothing takes at most {MAX_BATCH} runs (one transaction), "
            f"{file.name} has {len(specs)}"
        )
    with client_of(ctx) as client:
        if all_or_nothing:
            answer = client.submit_batch(specs, all_or_nothing=True)
        else:
            answer = client.submit_many(specs, batch_size=batch_size)
    if as_json:
        emit_json(answer)
    else:
        for result in answer["results"]:
            click.echo(_result_line(result))
        click.echo(
            f"{answer['created']} created, {answer['replayed']} replayed, "
            f"{answer['failed']} failed",
            err=True,
        )
    if answer["failed"]:
        sys.exit(1)


@click.command("status")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.pass_context
def status(ctx: click.Context, run_ids: tuple[str, ...], as_json: bool) -> None:
    """The status and exit code of each RUN_ID, in few requests. A run that does not exist,
    or that the token may not see, is 'not_found'; exits 1 if any is."""
    with client_of(ctx) as client:
        found = client.statuses(run_ids)
    missing = [i for i in dict.fromkeys(run_ids) if i not in found]
    if as_json:
        for run_id in dict.fromkeys(run_ids):
            click.echo(json.dumps(found.get(run_id, {"id": run_id, "status": "not_found"})))
    else:
        rows = []
        for run_id in dict.fromkeys(run_ids):
            run = found.get(run_id)
            if run is None:
                rows.append([run_id, "not_found", ""])
            else:
                code = run.get("exit_code")
                rows.append([run_id, run["status"], "" if code is None else str(code)])
        print_table(rows, ["ID", "STATUS", "EXIT"])
    if missing:
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(batch)
    main.add_command(status)
