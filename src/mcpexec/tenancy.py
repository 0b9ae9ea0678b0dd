"""Who may do what, and which runs a claim takes: the pure core of tenancy (issue 10).

A **tenant** is a team; a **principal** (a user or a service) belongs to one tenant and has one
**role**; a **token** authenticates a principal. The admin role is global (the token ``serve``
writes on first start); the other roles act within their tenant only.

``decide`` is the one rule every surface applies (through ``App.check_access``):

- a resource of another tenant does not exist for the caller (``NOT_FOUND``: 404, its existence
  is not revealed);
- a resource of the caller's tenant the role may not touch is ``FORBIDDEN`` (403);
- ``OWN`` actions (a submitter reading or cancelling) are allowed on the principal's own runs
  only (403 on another principal's run of the same tenant).

``fair_pick`` chooses which pending runs one claim takes when several tenants wait: the tenant
with the fewest running attempts goes first, so that a tenant with a long backlog delays another
tenant's run by at most one slot turnover; within a tenant, priority then FIFO.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SUBMITTER = "submitter"
    VIEWER = "viewer"


class Action(enum.StrEnum):
    SUBMIT = "submit"  # also rerun (after reading the original)
    READ = "read"  # runs, attempts, logs, artifacts
    CANCEL = "cancel"
    MANAGE_TOKENS = "manage_tokens"  # principals and tokens of the tenant
    MANAGE_TENANTS = "manage_tenants"  # tenants and their quotas
    READ_AUDIT = "read_audit"


class Scope(enum.StrEnum):
    ALL = "all"  # everything of the tenant (every tenant for the global admin)
    OWN = "own"  # the principal's own runs


class Decision(enum.StrEnum):
    ALLOW = "allow"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"


#: role → action → scope; an action absent from a role's row is forbidden. Written in
#: docs/tenancy.md exactly as here (tests/unit/test_tenancy.py compares the two).
MATRIX: dict[Role, dict[Action, Scope]] = {
    Role.ADMIN: {a: Scope.ALL for a in Action},
    Role.OPERATOR: {
        Action.SUBMIT: Scope.ALL,
        Action.READ: Scope.ALL,
        Action.CANCEL: Scope.ALL,
        Action.MANAGE_TOKENS: Scope.ALL,
        Action.READ_AUDIT: Scope.ALL,
    },
    Role.SUBMITTER: {
        Action.SUBMIT: Scope.ALL,
        Action.READ: Scope.OWN,
        Action.CANCEL: Scope.OWN,
    },
    Role.VIEWER: {Action.READ: Scope.ALL},
}

#: Roles a principal of each role may hand out with a new token (never more than its own).
GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.OPERATOR: frozenset({Role.OPERATOR, Role.SUBMITTER, Role.VIEWER}),
    Role.SUBMITTER: frozenset(),
    Role.VIEWER: frozenset(),
}

#: Label keys starting with this are set by mcpexec itself (the MCP tasks binding), never by a
#: caller.
RESERVED_LABEL_PREFIX = "mcp/"


#: A tenant id: what `mcpexec tenants create NAME` takes (a path- and label-safe word).
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def hash_token(token: str) -> str:
    """What the store keeps of a token. Tokens are 256-bit random strings, so a fast unsalted
    hash is enough: there is nothing to brute-force, and lookups by hash stay O(1)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Actor:
    """What ``decide`` needs of a caller."""

    id: str  # the principal's id (a run's owner)
    role: str
    tenant: str


def role_of(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def scope_of(role: str, action: Action) -> Scope | None:
    """The scope of ``action`` for ``role`` (``None``: forbidden)."""
    known = role_of(role)
    return None if known is None else MATRIX[known].get(action)


def decide(
    actor: Actor, action: Action, tenant: str | None = None, owner: str | None = None
) -> Decision:
    """May ``actor`` do ``action`` on a resource of ``tenant`` owned by ``owner``? Without a
    ``tenant`` the action is asked for the actor's own tenant (a submit, a listing)."""
    scope = scope_of(actor.role, action)
    if actor.role == Role.ADMIN:
        return Decision.ALLOW
    if tenant is not None and tenant != actor.tenant:
        return Decision.NOT_FOUND
    if scope is None:
        return Decision.FORBIDDEN
    if scope is Scope.OWN and tenant is not None and owner != actor.id:
        return Decision.FORBIDDEN
    return Decision.ALLOW


T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Candidate(Generic[T]):
    """A pending run a claim may take: its tenant and its order within the tenant."""

    key: T
    tenant: str
    priority: int
    seq: int


def fair_pick(
    candidates: Sequence[Candidate[T]],
    running: Mapping[str, int],
    limits: Mapping[str, int | None],
    n: int,
) -> list[T]:
    """Choose up to ``n`` of ``candidates`` for one claim, in the order to start them.

    ``running`` counts each tenant's running attempts now; ``limits`` is each tenant's
    ``max_concurrent`` (``None`` or absent: no limit). Each pick goes to the tenant with the
    fewest running-plus-picked attempts that is under its limit (ties: the higher priority head,
    then the older one); within a tenant, higher priority first, then FIFO (``seq``)."""
    queues: dict[str, list[Candidate[T]]] = {}
    for c in sorted(candidates, key=lambda c: (-c.priority, c.seq)):
        queues.setdefault(c.tenant, []).append(c)
    load = {t: running.get(t, 0) for t in queues}
    heads = dict.fromkeys(queues, 0)
    picked: list[T] = []
    while len(picked) < n:
        best: tuple[int, int, int, str] | None = None
        for tenant, queue in queues.items():
            i = heads[tenant]
            if i >= len(queue):
                continue
            limit = limits.get(tenant)
            if limit is not None and load[tenant] >= limit:
                continue
            head = queue[i]
            rank = (load[tenant], -head.priority, head.seq, tenant)
            if best is None or rank < best:
                best = rank
        if best is None:
            break
        tenant = best[3]
        picked.append(queues[tenant][heads[tenant]].key)
        heads[tenant] += 1
        load[tenant] += 1
    return picked
