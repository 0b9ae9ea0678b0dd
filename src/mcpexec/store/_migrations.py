"""Numbered schema migrations, one directory per dialect: ``migrations/<dialect>/NNNN_name.sql``.

Every dialect has the same numbers (``0002`` means the same change everywhere; the contract
tests check it), numbered 1, 2, 3, … without gaps. A dialect records the version it reached in
its own way (SQLite: ``PRAGMA user_version``, in the same transaction as the change) and hands
``migrate`` a function that applies one migration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from mcpexec.errors import StoreError

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def migrations_root() -> Traversable:
    return resources.files("mcpexec.store").joinpath("migrations")


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def dialects(root: Traversable | None = None) -> list[str]:
    """The dialects that have migrations (one directory each)."""
    root = root or migrations_root()
    return sorted(item.name for item in root.iterdir() if item.is_dir() and item.name.isalnum())


def migration_numbers(dialect: str, root: Traversable | None = None) -> list[int]:
    """The numbers of ``dialect``'s migration files, sorted (gaps and all)."""
    folder = (root or migrations_root()).joinpath(dialect)
    return sorted(int(m.group(1)) for item in folder.iterdir() if (m := _FILE.match(item.name)))


def load_migrations(dialect: str, root: Traversable | None = None) -> list[Migration]:
    """``dialect``'s migrations in order; refuses gaps (``StoreError``)."""
    folder = (root or migrations_root()).joinpath(dialect)
    found = []
    for item in folder.iterdir():
        match = _FILE.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), item.read_text()))
    found.sort(key=lambda m: m.number)
    if [m.number for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"{dialect} migrations must be numbered 0001, 0002, … without gaps")
    return found


def pending_migrations(dialect: str, current: int) -> list[Migration]:
    """``dialect``'s migrations above version ``current``, in order. A database newer than this
    code is refused (``StoreError``): an older mcpexec must not write to it."""
    migrations = load_migrations(dialect)
    if current > len(migrations):
        raise StoreError(
            f"the database schema (version {current}) is newer than this mcpexec "
            f"(version {len(migrations)}); upgrade mcpexec"
        )
    return migrations[current:]


def migrate(dialect: str, current: int, apply: Callable[[Migration], None]) -> int:
    """Apply every migration of ``dialect`` above version ``current``, in order, through
    ``apply`` (which also records the new version); returns the version reached."""
    pending = pending_migrations(dialect, current)
    for migration in pending:
        apply(migration)
    return current + len(pending)


_SECTION = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    """The named statements of ``sql/<dialect>/queries.sql`` (sections ``-- name: NAME``)."""
    text = resources.files("mcpexec.store").joinpath(f"sql/{dialect}/queries.sql").read_text()
    parts = _SECTION.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
