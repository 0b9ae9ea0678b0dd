"""``mcpexec tenants …``, ``mcpexec tokens …``, ``mcpexec quota show`` and ``mcpexec audit``
(issue 10), through the REST API. Tables for people, ``--json`` for scripts. A token's secret
is printed once, by ``tokens create``; it is never passed on a command line of ours."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mcpexec.cli_common import client_of, emit_json, print_table

if TYPE_CHECKING:  # imported where used: every CLI start registers these commands
    pass

_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``45s`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not a duration like 90d, 12h, 30m or 45s")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _limit(value: Any) -> str:
    return "-" if value is None else str(value)


def _resources(q: dict[str, Any]) -> str:
    """``memory_mb=512/2048 pids=-/64``: each limit's default/maximum of the tenant."""
    maxima, defaults = q.get("max_limits") or {}, q.get("default_limits") or {}
    names = [n for n in LIMIT_OPTIONS if n in maxima or n in defaults]
    return " ".join(f"{n}={_limit(defaults.get(n))}/{_limit(maxima.get(n))}" for n in names) or "-"


def _quota_rows(quotas: list[dict[str, Any]]) -> None:
    rows = [
        [
            q["tenant"],
            f"{q['in_use']['running']}/{_limit(q['limits']['max_concurrent'])}",
            f"{q['in_use']['queued']}/{_limit(q['limits']['max_queued'])}",
            _limit(q["limits"].get("max_runtime_s")),
            _resources(q),
        ]
        for q in quotas
    ]
    print_table(
        rows, ["TENANT", "RUNNING/MAX", "QUEUED/MAX", "MAX RUNTIME S", "LIMITS DEFAULT/MAX"]
    )


_json_option = click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")

#: A run's ``limits`` fields a tenant caps: the option names are these with dashes.
LIMIT_OPTIONS = {
    "memory_mb": ("MiB of memory", 16),
    "cpu_s": ("CPU seconds", 1),
    "pids": ("processes and threads", 8),
    "disk_mb": ("MiB of workdir", 1),
}
F = TypeVar("F", bound=Callable[..., Any])


def _limit_options(command: F) -> F:
    """``--max-runtime``, ``--memory-mb`` … (the maximum a run may ask for) and
    ``--default-memory-mb`` … (what a run that gives none gets; else the maximum)."""
    for name, (what, low) in reversed(LIMIT_OPTIONS.items()):
        flag = name.replace("_", "-")
        command = click.option(
            f"--default-{flag}",
            f"default_{name}",
            type=click.IntRange(min=low),
            help=f"Default {what} of a run that gives none (else the maximum).",
        )(command)
        command = click.option(
            f"--{flag}",
            f"max_{name}",
            type=click.IntRange(min=low),
            help=f"Most {what} a run may ask.",
        )(command)
    return click.option(
        "--max-runtime",
        help="Cap on a run's timeout, e.g. 1h, 30m (a run without one gets at most this).",
    )(command)


def _limit_values(options: dict[str, Any]) -> dict[str, Any]:
    """The client's keyword arguments of ``_limit_options``' values."""
    runtime = options.pop("max_runtime")
    maxima = {n: v for n in LIMIT_OPTIONS if (v := options.pop(f"max_{n}")) is not None}
    defaults = {n: v for n in LIMIT_OPTIONS if (v := options.pop(f"default_{n}")) is not None}
    return {
        "max_runtime_s": None if runtime is None else parse_duration(runtime),
        "max_limits": maxima,
        "default_limits": defaults,
    }


# -- tenants -------------------------------------------------------------------------------------
@click.group()
def tenants() -> None:
    """Tenants (teams) and their quotas (admin)."""


@tenants.command("create")
@click.argument("tenant")
@click.option("--max-concurrent", type=click.IntRange(min=1), help="Running attempts at once.")
@click.option("--max-queued", type=click.IntRange(min=1), help="Pending runs (then 429).")
@_limit_options
@_json_option
@click.pass_context
def tenants_create(
    ctx: click.Context,
    /,
    tenant: str,
    max_concurrent: int | None,
    max_queued: int | None,
    as_json: bool,
    **limits: Any,
) -> None:
    """Create TENANT, e.g. `tenants create data-team --max-concurrent 4 --max-runtime 1h
    --memory-mb 2048 --default-memory-mb 512`."""
    with client_of(ctx) as api:
        quota = api.create_tenant(tenant, max_concurrent, max_queued, **_limit_values(limits))
    if as_json:
        emit_json(quota)
        return
    click.echo(f"tenant {tenant} created")
    _quota_rows([quota])


@tenants.command("list")
@_json_option
@click.pass_context
def tenants_list(ctx: click.Context, as_json: bool) -> None:
    """Tenants with their limits and what they use now."""
    with client_of(ctx) as api:
        found = api.tenants()
    if as_json:
        emit_json(found)
    else:
        _quota_rows(found)


@tenants.command("set")
@click.argument("tenant")
@click.option("--max-concurrent", type=click.IntRange(min=1), help="Omitted: server default.")
@click.option("--max-queued", type=click.IntRange(min=1), help="Omitted: server default.")
@_limit_options
@_json_option
@click.pass_context
def tenants_set(
    ctx: click.Context,
    /,
    tenant: str,
    max_concurrent: int | None,
    max_queued: int | None,
    as_json: bool,
    **limits: Any,
) -> None:
    """Replace TENANT's quotas, all of them (an omitted one: the server's default, none)."""
    with client_of(ctx) as api:
        quota = api.set_quota(tenant, max_concurrent, max_queued, **_limit_values(limits))
    if as_json:
        emit_json(quota)
    else:
        _quota_rows([quota])


# -- quota ---------------------------------------------------------------------------------------
@click.group()
def quota() -> None:
    """A tenant's limits and what it uses now."""


@quota.command("show")
@click.argument("tenant", required=False)
@_json_option
@click.pass_context
def quota_show(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """Limits and load of TENANT (default: the token's tenant)."""
    with client_of(ctx) as api:
        found = api.quota(tenant)
    if as_json:
        emit_json(found)
    else:
        _quota_rows([found])


# -- tokens --------------------------------------------------------------------------------------
@click.group()
def tokens() -> None:
    """Tokens: create (the secret is shown once), list, revoke."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what uses it (e.g. ci-bot).")
@click.option(
    "--role",
    type=click.Choice(["admin", "operator", "submitter", "viewer"]),
    default="submitter",
    show_default=True,
)
@click.option("--tenant", help="Default: the caller's tenant.")
@click.option("--kind", type=click.Choice(["user", "service"]), default="service")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h (default: never).")
@_json_option
@click.pass_context
def tokens_create(
    ctx: click.Context,
    name: str,
    role: str,
    tenant: str | None,
    kind: str,
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a token and print it once (it is stored hashed: keep it now)."""
    expires_in_s = None if expires is None else parse_duration(expires)
    with client_of(ctx) as api:
        created = api.create_token(name, role, tenant, expires_in_s, kind)
    if as_json:
        emit_json(created)
        return
    click.echo(created["token"])
    click.echo(
        f"token {created['id']} ({created['role']} of {created['tenant']}): shown once, "
        "keep it now",
        err=True,
    )


@tokens.command("list")
@click.option("--tenant", help="Default: all (admin) or the caller's tenant.")
@_json_option
@click.pass_context
def tokens_list(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """Names, roles and times of tokens, never their secrets."""
    with client_of(ctx) as api:
        found = api.tokens(tenant)
    if as_json:
        emit_json(found)
        return
    rows = [
        [
            t["id"],
            t["name"],
            t["role"],
            t["tenant"],
            t["created_at"][:19],
            (t["last_used_at"] or "-")[:19],
            (t["expires_at"] or "never")[:19],
            "revoked" if t["revoked"] else "active",
        ]
        for t in found
    ]
    print_table(rows, ["ID", "NAME", "ROLE", "TENANT", "CREATED", "LAST USED", "EXPIRES", "STATE"])


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke TOKEN_ID: refused from the next request on."""
    with client_of(ctx) as api:
        revoked = api.revoke_token(token_id)
    click.echo(f"token {revoked['id']} ({revoked['name']}) revoked")


# -- audit ---------------------------------------------------------------------------------------
@click.command()
@click.option("--tenant", help="Default: all (admin) or the caller's tenant.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@_json_option
@click.pass_context
def audit(ctx: click.Context, tenant: str | None, limit: int, as_json: bool) -> None:
    """Who submitted, cancelled, created or revoked a token, changed a quota; latest first."""
    with client_of(ctx) as api:
        entries = api.audit(tenant, limit)
    if as_json:
        emit_json(entries)
        return
    rows = [[e["at"][:19], e["tenant"], e["actor"], e["action"], e["target"]] for e in entries]
    print_table(rows, ["AT", "TENANT", "ACTOR", "ACTION", "TARGET"])


def register(main: click.Group) -> None:
    for command in (tenants, tokens, quota, audit):
        main.add_command(command)
