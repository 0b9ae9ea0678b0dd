"""What the CLI's command modules share: the client of this invocation, JSON and table output.

Imported at every CLI start (the modules register their commands then), so the client is
imported only when a command asks for one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from mcpexec.client import Client

#: ``--log-level`` and ``--log-format`` of the engine commands (default: the settings
#: ``log_level``/``log_format``, i.e. ``MCPEXEC_LOG_LEVEL`` …, else info and text).
log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Log level (default: setting log_level, info).",
)
log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="text: human lines; json: one JSON object per line (default: setting log_format).",
)


def client_of(ctx: click.Context) -> Client:
    """The client for ``--url``/``--token`` of the main group (else the environment's)."""
    from mcpexec.client import Client

    obj: dict[str, Any] = ctx.ensure_object(dict)
    return Client.from_env(url=obj.get("url"), token=obj.get("token"))


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class PriorityType(click.ParamType[int]):
    """``--priority``: an integer or low/normal/high, sent as the integer (the API takes numbers
    as JSON numbers, not strings)."""

    name = "priority"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from mcpexec.models import parse_priority  # pydantic only when the option is given

        if isinstance(value, int):
            return value
        try:
            return parse_priority(str(value).strip())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


PRIORITY = PriorityType()
