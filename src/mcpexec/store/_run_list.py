"""The runs list as SQL, for both dialects: one statement per shape of filter, each walking an
index in the list's order and stopping after a page, so that every filter the API offers stays
a few milliseconds at a million runs (issue 17, "history at scale").

The list is newest first. Without a time window it is ordered by ``seq`` and walks, in this
order of preference, the runs of the first label asked for (``run_labels``), of the owner, the
task, the tool, each asked-for status (one ordered walk per status, merged), of the tenant, or
all runs. With ``created_after``/``created_before`` it is ordered by ``(created_at, seq)`` and
walks the window (``runs_created``): an empty or old window costs as little as a recent one.
A bulk read (``ids``) looks each id up in the unique index on ``runs.id``. The other filters
are checked on the rows walked. SQLite is told the index (``INDEXED BY``)
since it has no statistics to choose by; PostgreSQL's planner chooses from its own.

A filter combining a broad driver with a rare residual (a tenant's runs of a label nobody uses,
say) still walks the driver's rows: the drivers are ordered so that the usual filters are not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mcpexec.models import Page, RunFilter, RunStatus
from mcpexec.store._shared import Row
from mcpexec.store._sqlite_rows import run_of, us_or_none
from mcpexec.store.base import RunCursor

Dialect = Literal["sqlite", "postgres"]

_ALL_STATUSES = frozenset(RunStatus)


@dataclass
class _Query:
    dialect: Dialect
    args: dict[str, object] = field(default_factory=dict)

    def p(self, name: str, value: object) -> str:
        """A bound parameter in the dialect's style."""
        self.args[name] = value
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def indexed(self, index: str) -> str:
        return f" INDEXED BY {index}" if self.dialect == "sqlite" else ""


def list_runs_sql(
    dialect: Dialect, filter: RunFilter, limit: int, cursor: RunCursor | None
) -> tuple[str, dict[str, object]]:
    """The statement and its parameters for one page of ``limit`` runs (plus one, which tells
    whether another page follows). Every value is a bound parameter: only the names of
    columns and indexes written here are formatted into the text."""
    q = _Query(dialect)
    windowed = filter.created_after is not None or filter.created_before is not None
    labels = sorted(filter.labels.items())
    statuses = sorted(s.value for s in filter.status) if filter.status != _ALL_STATUSES else []
    where = _columns(q, filter) + _after(q, cursor, windowed)
    n = q.p("limit", limit + 1)
    if filter.ids is not None:  # a bulk read: look each id up (the unique index on id)
        source = "runs" + q.indexed("sqlite_autoindex_runs_1")  # the UNIQUE of runs.id (0001)
        order = "runs.created_at DESC, runs.seq DESC" if windowed else "runs.seq DESC"
        ids = sorted(filter.ids)
        if dialect == "sqlite":
            listed = q.p("ids", json.dumps(ids))
            where.append(f"runs.id IN (SELECT value FROM json_each({listed}))")  # noqa: S608
        else:
            where.append(f"runs.id = ANY({q.p('ids', ids)})")
    elif windowed:
        source, order = "runs" + q.indexed("runs_created"), "runs.created_at DESC, runs.seq DESC"
    elif labels:
        key, value = labels.pop(0)
        # CROSS JOIN: SQLite keeps the written order (walk the label, then look the run up).
        join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
        source, order = f"run_labels AS d {join} runs ON runs.seq = d.seq", "d.seq DESC"
        where.append(f"d.key = {q.p('d_key', key)}")
        where.append(f"d.value = {q.p('d_value', _label_value(value))}")
    else:
        order = "runs.seq DESC"
        given = [c for c in ("owner", "task", "tool") if getattr(filter, c) is not None]
        if given:
            source = "runs" + q.indexed(f"runs_{given[0]}")
        elif statuses:
            return _status_walks(q, statuses, where, n), q.args
        else:
            source = "runs" + (q.indexed("runs_tenant") if filter.tenant is not None else "")
    where.extend(_label_checks(q, labels))
    if statuses:
        listed = ", ".join(q.p(f"s{i}", s) for i, s in enumerate(statuses))
        where.append(f"runs.status IN ({listed})")
    cond = " AND ".join(where) or "TRUE"
    return f"SELECT runs.* FROM {source} WHERE {cond} ORDER BY {order} LIMIT {n}", q.args  # noqa: S608


def _columns(q: _Query, filter: RunFilter) -> list[str]:
    """The conditions on the run's own columns (checked on every row walked)."""
    where = []
    for column in ("tenant", "task", "owner", "tool"):
        value = getattr(filter, column)
        if value is not None:
            where.append(f"runs.{column} = {q.p(column, value)}")
    if filter.created_after is not None:
        where.append(f"runs.created_at >= {q.p('after', us_or_none(filter.created_after))}")
    if filter.created_before is not None:
        where.append(f"runs.created_at < {q.p('before', us_or_none(filter.created_before))}")
    return where


def _after(q: _Query, cursor: RunCursor | None, windowed: bool) -> list[str]:
    if cursor is None:
        return []
    if windowed and cursor.created_at_us is not None:
        at, seq = q.p("c_at", cursor.created_at_us), q.p("c_seq", cursor.seq)
        return [f"(runs.created_at, runs.seq) < ({at}, {seq})"]
    # A list's own cursor, or one from a list of the other order: the runs older than its seq.
    return [f"runs.seq < {q.p('c_seq', cursor.seq)}"]


def _status_walks(q: _Query, statuses: list[str], where: list[str], n: str) -> str:
    """One ordered walk of runs_status per status, merged: each stops after a page."""
    parts = []
    for i, status in enumerate(statuses):
        cond = " AND ".join([f"runs.status = {q.p(f's{i}', status)}", *where])
        parts.append(
            f"SELECT * FROM (SELECT runs.* FROM runs{q.indexed('runs_status')}"  # noqa: S608
            f" WHERE {cond} ORDER BY runs.seq DESC LIMIT {n}) AS s{i}"
        )
    return " UNION ALL ".join(parts) + f" ORDER BY seq DESC LIMIT {n}"


def _label_value(value: str) -> str:
    # run_labels keeps a NUL as U+FFFF (migration 0013): SQLite's json_each ends a value at a
    # NUL and PostgreSQL's text refuses one.
    return value.replace("\x00", "\uffff")


def _label_checks(q: _Query, labels: list[tuple[str, str]]) -> list[str]:
    """The labels not walked, checked on each row walked."""
    checks = []
    for i, (key, value) in enumerate(labels):
        k, v = q.p(f"l{i}_key", key), q.p(f"l{i}_value", _label_value(value))
        checks.append(
            f"EXISTS (SELECT 1 FROM run_labels AS l{i} WHERE l{i}.key = {k}"  # noqa: S608
            f" AND l{i}.value = {v} AND l{i}.seq = runs.seq)"
        )
    return checks


def page_of(filter: RunFilter, limit: int, rows: Sequence[Row]) -> Page:
    """The page of ``limit`` runs from the ``limit + 1`` rows a statement of ``list_runs_sql``
    returned; ``next_cursor`` after the last when another page follows."""
    if len(rows) <= limit:
        return Page(runs=[run_of(r) for r in rows])
    last = rows[limit - 1]
    windowed = filter.created_after is not None or filter.created_before is not None
    cursor = RunCursor(seq=last["seq"], created_at_us=last["created_at"] if windowed else None)
    return Page(runs=[run_of(r) for r in rows[:limit]], next_cursor=cursor.token())
