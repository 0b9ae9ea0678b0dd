"""``mcpexec events``: print the event log; ``-f`` follows it live, resuming after a lost
connection (or a server restart) from the last id received, so nothing is skipped.
``mcpexec alerts``: the alert states."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mcpexec.cli_common import client_of


def _line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    details = " ".join(f"{k}={v}" for k, v in sorted(data.items()) if v is not None)
    return f"{event['id']}  {event['at']}  {event['type']:<22} {event['subject']}  {details}"


def _print(event: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(event, sort_keys=True) if as_json else _line(event).rstrip())
    sys.stdout.flush()


@click.command("events")
@click.option("--follow", "-f", is_flag=True, help="Follow new events live (Ctrl-C stops).")
@click.option(
    "--after",
    type=click.IntRange(0),
    help="Only events after this id (default: all kept; with -f: from now on).",
)
@click.option("--type", "type_prefix", help="Only types starting with this (run., run.finished).")
@click.option("--subject", help="Only events of this run, schedule or workflow run id.")
@click.option(
    "--limit", type=click.IntRange(1), help="Print at most this many events (default: all)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(
    ctx: click.Context,
    follow: bool,
    after: int | None,
    type_prefix: str | None,
    subject: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Print events of runs, schedules and workflows (your tenant's; an admin sees all)."""
    filters = {"type": type_prefix, "subject": subject}
    printed = 0
    with client_of(ctx) as client:
        if follow:

            def lost(last: int | None) -> None:
                click.echo(f"connection lost; resuming after event {last}", err=True)

            for event in client.follow_events(after, on_reconnect=lost, filters=filters):
                _print(event, as_json)
                printed += 1
                if limit is not None and printed >= limit:
                    return
            return
        cursor = after or 0
        while limit is None or printed < limit:
            want = 1000 if limit is None else min(1000, limit - printed)
            page = client.events_page(after=cursor, limit=want, **filters)
            for event in page["events"]:
                _print(event, as_json)
            printed += len(page["events"])
            if not page["events"] or int(page["next_after"]) == cursor:
                return
            cursor = int(page["next_after"])


@click.command("alerts")
@click.option("--firing", is_flag=True, help="Only alerts that are firing now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alerts(ctx: click.Context, firing: bool, as_json: bool) -> None:
    """Show the alert rules' states (docs/observability.md), firing first."""
    with client_of(ctx) as client:
        found = client.alerts("firing" if firing else None)
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    if not found["alerts"]:
        click.echo("no alerts")
        return
    for alert in found["alerts"]:
        since = alert["fired_at"] if alert["state"] == "firing" else alert["resolved_at"]
        name = alert["rule"] + (f"/{alert['subject']}" if alert["subject"] else "")
        state = alert["state"].upper() if alert["state"] == "firing" else alert["state"]
        click.echo(f"{state:<9} {name:<32} {since}  {alert['message']}")


def register(main: click.Group) -> None:
    main.add_command(events)
    main.add_command(alerts)
