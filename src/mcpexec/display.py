"""Human-readable tables and run summaries for the CLI."""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from typing import Any

import click


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _summary(run: dict[str, Any], width: int = 40) -> str:
    spec = run["spec"]
    if spec.get("command"):
        text = shlex.join(spec["command"])
    elif spec.get("shell"):
        text = spec["shell"]
    elif spec.get("tool"):
        text = f"[tool] {_tool_name(spec['tool'])}"
    else:
        text = f"[{spec['script']['language']}] script"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _full_spec(run: dict[str, Any]) -> str:
    """What runs, as a shell would take it (``sh -c 'exit 2'``), in full."""
    spec = run["spec"]
    if spec.get("command"):
        return shlex.join(spec["command"])
    if spec.get("shell") is not None:
        return f"[shell] {spec['shell']}"
    if spec.get("tool"):
        arguments = json.dumps(spec["tool"].get("arguments") or {}, ensure_ascii=False)
        return f"[tool] {_tool_name(spec['tool'])} {arguments}"
    return f"[{spec['script']['language']} script] {len(spec['script']['source'])} characters"


def _tool_name(tool: dict[str, Any]) -> str:
    return f"{tool.get('server')}.{tool.get('name')}"


def _outcome(run: dict[str, Any]) -> str:
    failure = run.get("failure")
    if run["status"] == "completed" and run["spec"].get("tool"):
        return "ok"
    if run["status"] == "completed":
        return f"exit {run.get('exit_code', 0)}"
    if failure:
        return str(failure["kind"])
    return ""


def _ended(run: dict[str, Any]) -> bool:
    return run["status"] in ("completed", "failed", "cancelled")


def print_runs_table(runs: list[dict[str, Any]]) -> None:
    if not runs:
        click.echo("no runs")
        return
    rows = [
        (r["id"], r["status"], str(r["attempts"]), _outcome(r), _when(r["created_at"]), _summary(r))
        for r in runs
    ]
    header = ("ID", "STATUS", "ATT", "OUTCOME", "CREATED", "SPEC")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def print_run(run: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
    failure = run.get("failure")
    lines = [
        ("id", run["id"]),
        (
            "status",
            run["status"]
            + (" (cancel requested)" if run.get("cancel_requested") and not _ended(run) else ""),
        ),
        ("spec", _full_spec(run)),
        ("priority", str(run["priority"])),
        ("labels", ", ".join(f"{k}={v}" for k, v in run["labels"].items()) or "-"),
        ("created", _when(run["created_at"])),
        ("started", _when(run.get("started_at"))),
        ("finished", _when(run.get("finished_at"))),
        ("attempts", f"{run['attempts']} of at most {run['max_attempts']}"),
        ("exit code", "-" if run.get("exit_code") is None else str(run["exit_code"])),
        ("failure", f"{failure['kind']}: {failure['message']}" if failure else "-"),
    ]
    if run.get("next_attempt_at") and run["status"] == "pending":
        lines.append(("next attempt", _when(run["next_attempt_at"])))
    progress = run.get("progress")
    if progress:
        value = progress.get("value")
        pct = f"{value * 100:.0f}%" if value is not None else ""
        lines.append(("progress", f"{pct} {progress.get('message') or ''}".strip()))
    if run.get("result") is not None:
        lines.append(("result", json.dumps(run["result"])[:200]))
    if run.get("partial"):
        lines.append(("partial", "yes (failed after producing artifacts)"))
    if run.get("output_truncated"):
        lines.append(("output", "truncated (head and tail kept)"))
    for key, value in lines:
        click.echo(f"{key + ':':<14}{value}")
    if attempts:
        click.echo("")
        click.echo(f"{'#':>3}  {'STATUS':<10} {'EXIT':>5}  {'DURATION':>9}  {'FAILURE':<12} WORKER")
        for a in attempts:
            duration = "-" if a.get("duration_s") is None else f"{a['duration_s']:.3f}s"
            exit_code = "-" if a.get("exit_code") is None else str(a["exit_code"])
            kind = (a.get("failure") or {}).get("kind", "")
            click.echo(
                f"{a['number']:>3}  {a['status']:<10} {exit_code:>5}  {duration:>9}  {kind:<12} "
                f"{a['worker_id']}"
            )
        last = attempts[-1]
        if last.get("isolation"):
            click.echo(f"{'isolation:':<14}{last['isolation']}")
        if last.get("limits"):
            text = " ".join(f"{k}={v}" for k, v in last["limits"].items())
            click.echo(f"{'limits:':<14}{text}")
