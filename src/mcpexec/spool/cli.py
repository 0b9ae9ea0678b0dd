"""``mcpexec spool``: ``spool run DIR`` (the daemon; ``spool DIR`` is the same) and
``spool status DIR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_DIR = click.Path(file_okay=False, path_type=Path)


class _SpoolGroup(click.Group):
    """``mcpexec spool DIR`` means ``mcpexec spool run DIR`` (the issue's spelling); a
    directory literally named ``run`` or ``status`` needs the explicit ``spool run``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SpoolGroup)
def spool() -> None:
    """The spool directory: drop job files into DIR/pending/, get results in DIR/completed/
    and DIR/failed/ (docs/spool.md). 'mcpexec spool DIR' is short for 'spool run DIR'."""


@spool.command("run")
@click.argument("directory", type=_DIR)
@click.option("--workers", type=int, help="Worker slots in this process (default 4).")
@click.option("--no-workers", is_flag=True, help="Run no workers: a serve/worker executes runs.")
@click.option("--home", type=click.Path(path_type=Path), help="Data directory ($MCPEXEC_HOME).")
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="Format of DIR/daemon.log.",
)
@click.option("--log-level", default="warning", show_default=True, help="Logs go to stderr.")
@click.option(
    "--drain", is_flag=True, help="Run the jobs DIR holds now, write their results, then exit."
)
def run_cmd(
    directory: Path,
    workers: int | None,
    no_workers: bool,
    home: Path | None,
    log_format: str,
    log_level: str,
    drain: bool,
) -> None:
    """Watch DIR and run its jobs on the store in $MCPEXEC_HOME until SIGTERM/SIGINT (with
    --drain: until the jobs found there are done)."""
    from mcpexec.settings import load_settings
    from mcpexec.spool.standalone import run_standalone

    settings = load_settings(workers=workers, home=home)
    slots = 0 if no_workers else settings.workers
    fmt: Any = log_format
    run_standalone(
        directory, settings, workers=slots, log_format=fmt, log_level=log_level, drain=drain
    )


@spool.command("status")
@click.argument("directory", type=_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(directory: Path, as_json: bool) -> None:
    """Pending, running, completed and failed counts of DIR, and the jobs in flight."""
    from mcpexec.spool.status import format_status, spool_status

    if not directory.is_dir():
        raise click.UsageError(f"{directory} is not a directory")
    state = spool_status(directory)
    if as_json:
        click.echo(json.dumps(state.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(format_status(state))
