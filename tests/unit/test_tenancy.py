"""The pure core of tenancy: the access matrix as documented, ``decide`` and ``fair_pick``."""

from __future__ import annotations

import re
from pathlib import Path

from mcpexec.tenancy import (
    MATRIX,
    Action,
    Actor,
    Candidate,
    Decision,
    Role,
    Scope,
    decide,
    fair_pick,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "tenancy.md"


def _documented_matrix() -> dict[str, dict[str, str]]:
    """The table under 'The access matrix' in docs/tenancy.md: action rows, role columns."""
    text = DOC.read_text()
    table = text.split("<!-- matrix -->")[1]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    header = [c.strip().strip("`") for c in rows[0].strip("|").split("|")]
    found: dict[str, dict[str, str]] = {role: {} for role in header[1:]}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        action = re.sub(r"`", "", cells[0]).split()[0]
        for role, cell in zip(header[1:], cells[1:], strict=True):
            found[role][action] = cell
    return found


def test_the_matrix_is_documented_exactly_as_built() -> None:
    documented = _documented_matrix()
    mark = {Scope.ALL: "all", Scope.OWN: "own"}
    for role in Role:
        for action in Action:
            scope = MATRIX[role].get(action)
            want = "\N{EN DASH}" if scope is None else mark[scope]
            assert documented[role.value][action.value] == want, (role, action)


def test_decide() -> None:
    sub = Actor("p1", "submitter", "acme")
    assert decide(sub, Action.SUBMIT) is Decision.ALLOW
    assert decide(sub, Action.READ, "acme", "p1") is Decision.ALLOW
    assert decide(sub, Action.READ, "acme", "p2") is Decision.FORBIDDEN
    assert decide(sub, Action.READ, "other", "p1") is Decision.NOT_FOUND
    assert decide(sub, Action.MANAGE_TOKENS, "acme") is Decision.FORBIDDEN
    viewer = Actor("v", "viewer", "acme")
    assert decide(viewer, Action.READ, "acme", "p2") is Decision.ALLOW
    assert decide(viewer, Action.CANCEL, "acme", "v") is Decision.FORBIDDEN
    assert decide(viewer, Action.SUBMIT) is Decision.FORBIDDEN
    admin = Actor("a", "admin", "default")
    assert decide(admin, Action.CANCEL, "acme", "p1") is Decision.ALLOW
    unknown = Actor("x", "root", "acme")
    assert decide(unknown, Action.READ, "acme") is Decision.FORBIDDEN


def _c(key: str, tenant: str, priority: int = 0, seq: int = 0) -> Candidate[str]:
    return Candidate(key=key, tenant=tenant, priority=priority, seq=seq)


def test_fair_pick_least_loaded_tenant_first() -> None:
    backlog = [_c(f"a{i}", "a", priority=9, seq=i) for i in range(100)]
    late = [_c("b0", "b", seq=1000), _c("b1", "b", seq=1001)]
    picked = fair_pick([*backlog, *late], {"a": 3}, {}, 3)
    assert picked == ["b0", "b1", "a0"]  # b has nothing running; a has 3


def test_fair_pick_caps_and_order_within_tenant() -> None:
    cands = [_c("x-old", "x", seq=1), _c("x-hi", "x", priority=5, seq=2), _c("x3", "x", seq=3)]
    assert fair_pick(cands, {"x": 1}, {"x": 3}, 10) == ["x-hi", "x-old"]
    assert fair_pick(cands, {"x": 3}, {"x": 3}, 10) == []
    assert fair_pick(cands, {}, {"x": None}, 0) == []
