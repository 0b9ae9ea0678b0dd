"""``mcpexec tools``, ``mcpexec call SERVER.TOOL --arg k=v`` and ``mcpexec servers
list|show|reload`` (issue 14): the gateway's REST routes, tables for people, ``--json`` for
scripts. Registered on the main group by :func:`register`."""

from __future__ import annotations

import json
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

import click

from mcpexec.cli_common import client_of, emit_json, print_table

if TYPE_CHECKING:  # imported where used: every CLI start registers these commands
    from mcpexec.client import Client, Json


def _json_call(client: Client, method: str, path: str, **kwargs: Any) -> Json:
    return client._json(method, path, **kwargs)


def _one_line(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("tools")
@click.option("--server", help="Only this server's tools.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def tools(ctx: click.Context, server: str | None, as_json: bool) -> None:
    """List the tools of the MCP servers behind the server (and fs)."""
    with client_of(ctx) as client:
        params = {"server": server} if server else {}
        found = _json_call(client, "GET", "/api/v1/tools", params=params)
    if as_json:
        emit_json(found)
        return
    rows = [[t["name"], _one_line(t.get("description") or "")] for t in found["tools"]]
    print_table(rows, ["TOOL", "DESCRIPTION"])
    for clash in found.get("collisions", []):
        servers = ", ".join(f"{s}.{clash['name']}" for s in clash["servers"])
        click.echo(f"note: '{clash['name']}' is offered by several servers: call {servers}")


def _arguments(client: Client, name: str, pairs: tuple[str, ...], raw: str | None) -> Json:
    """``--args JSON`` and ``--arg k=v`` (typed by the tool's inputSchema, fetched)."""
    from mcpexec.params import parse_param_args

    arguments: dict[str, Any] = {}
    if raw is not None:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise click.UsageError(f"--args is not JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise click.UsageError("--args must be a JSON object")
        arguments.update(loaded)
    if pairs:
        schema: dict[str, Any] = {}
        server = name.split(".", 1)[0] if "." in name else None
        params = {"server": server} if server else {}
        for tool in _json_call(client, "GET", "/api/v1/tools", params=params)["tools"]:
            if name in (tool["name"], tool.get("tool")):
                schema = tool.get("inputSchema") or {}
                break
        arguments.update(parse_param_args(pairs, schema))
    return arguments


@click.command("call")
@click.argument("name")
@click.option("--arg", "pairs", multiple=True, help="An argument, name=value (repeatable).")
@click.option("--args", "raw", help="All arguments as one JSON object.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds without progress (default: "
              "the server's).")  # fmt: skip
@click.option(
    "--detach",
    "-d",
    is_flag=True,
    help="Submit a durable tool run (retried, kept) and print its id (SERVER.TOOL only).",
)
@click.option("--retry", "retries", type=click.IntRange(1, 100), help="With --detach: attempts "
              "in all, retrying tool_error, timeout and server_lost.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.pass_context
def call(
    ctx: click.Context,
    name: str,
    pairs: tuple[str, ...],
    raw: str | None,
    timeout_s: float | None,
    detach: bool,
    retries: int | None,
    as_json: bool,
) -> None:
    """Call a tool (SERVER.TOOL, or a unique tool name) and print its output.

    Exits 1 when the tool reported an error. With --detach the call is a run: follow it with
    'mcpexec show ID' or 'mcpexec runs --tool SERVER.TOOL'."""
    if retries is not None and not detach:
        raise click.UsageError("--retry goes with --detach (a durable tool run)")
    with client_of(ctx) as client:
        arguments = _arguments(client, name, pairs, raw)
        if detach:
            spec: dict[str, Any] = {"tool": {"name": name, "arguments": arguments}}
            if timeout_s is not None:
                spec["timeout_s"] = timeout_s
            if retries is not None:
                kinds = ["tool_error", "timeout", "server_lost"]
                spec["retry"] = {"max_attempts": retries, "retry_on": kinds}
            submitted = client.submit(spec)
            emit_json(submitted) if as_json else click.echo(submitted["id"])
            return
        body: dict[str, Any] = {"arguments": arguments}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        path = f"/api/v1/tools/{urllib.parse.quote(name, safe='')}:call"
        answer = _json_call(client, "POST", path, json=body)
    if as_json:
        emit_json(answer)
    elif answer.get("status") == "success":
        output = answer.get("output")
        if (
            isinstance(output, dict)
            and set(output) == {"content"}
            and isinstance(output["content"], str)
        ):
            click.echo(output["content"])
        else:
            emit_json(output)
    if answer.get("status") != "success":
        error = cast(dict[str, Any], answer.get("error") or {})
        click.echo(f"mcpexec: {answer.get('tool', name)}: {error.get('message', 'failed')} "
                   f"({error.get('code', 'tool_error')})", err=True)  # fmt: skip
        sys.exit(1)


@click.group("servers")
def servers() -> None:
    """The MCP servers behind the server: health, reload."""


@servers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_servers(ctx: click.Context, as_json: bool) -> None:
    """Each server's state, pid, restarts, tool count and last error."""
    with client_of(ctx) as client:
        found = _json_call(client, "GET", "/api/v1/servers")
    if as_json:
        emit_json(found)
        return
    rows = [
        [
            s["name"],
            s["transport"],
            s["state"],
            str(s["pid"] or "-"),
            str(s["restarts"]),
            str(s["tool_count"]),
            _sandbox_text(s),
            _one_line(s.get("last_error") or "", 40),
        ]
        for s in found["servers"]
    ]
    headers = ["SERVER", "TRANSPORT", "STATE", "PID", "RESTARTS", "TOOLS", "SANDBOX", "LAST ERROR"]
    print_table(rows, headers)
    _problems(found)


def _sandbox_text(server: Json) -> str:
    """``bwrap``/``bwrap+net``, ``OFF (config)`` for an opt-out, ``off`` or ``-`` (not stdio)."""
    sandbox = server.get("sandbox")
    if sandbox is None:
        return "-"
    if sandbox:
        return "bwrap+net" if server.get("network") else "bwrap"
    return "OFF (config)" if server.get("sandbox_from") == "config" else "off"


def _limits_text(server: Json) -> str:
    limits = server.get("limits") or {}
    parts = []
    for key in ("memory_mb", "pids", "open_files"):
        if key in limits:
            by = limits.get(key.split("_")[0] + "_by")
            parts.append(f"{key}={limits[key]}" + (f" ({by})" if by else ""))
    if "seccomp" in limits:
        parts.append(f"seccomp={limits['seccomp']}")
    if "uid" in limits:  # a root serve's sandboxed server runs as the sandbox user
        parts.append(f"uid={limits['uid']}:{limits.get('gid')}")
    return ", ".join(parts) or "-"


def _problems(found: Json) -> None:
    if found.get("load_error"):
        click.echo(f"error: {found['load_error']}", err=True)
    for problem in found.get("problems", []):
        click.echo(f"problem: {problem['message']}", err=True)


@servers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_server(ctx: click.Context, name: str, as_json: bool) -> None:
    """One server's health and its tools."""
    with client_of(ctx) as client:
        found = _json_call(client, "GET", f"/api/v1/servers/{urllib.parse.quote(name, safe='')}")
    if as_json:
        emit_json(found)
        return
    for key in ("name", "transport", "state", "pid", "restarts", "tool_count", "in_flight",
                "last_error"):  # fmt: skip
        click.echo(f"{key + ':':12} {found.get(key) if found.get(key) is not None else '-'}")
    click.echo(f"{'sandbox:':12} {_sandbox_text(found)}")
    click.echo(f"{'limits:':12} {_limits_text(found)}")
    click.echo("tools:       " + (", ".join(found.get("tools", [])) or "-"))


@servers.command("reload")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def reload_servers(ctx: click.Context, as_json: bool) -> None:
    """Re-read the servers file: add, remove and restart what changed (admin; also SIGHUP)."""
    with client_of(ctx) as client:
        diff = _json_call(client, "POST", "/api/v1/servers:reload")
    if as_json:
        emit_json(diff)
        return
    for key in ("added", "removed", "restarted", "unchanged"):
        click.echo(f"{key + ':':11} {', '.join(diff[key]) or '-'}")
    _problems(diff)


def register(main: click.Group) -> None:
    for command in (tools, call, servers):
        main.add_command(command)
