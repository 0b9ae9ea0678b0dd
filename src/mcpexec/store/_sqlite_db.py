"""The SQLite plumbing under ``SqliteStore``: one connection on one thread, transactions with
``SQLITE_BUSY`` retries, named queries and numbered migrations.

Why one thread: ``sqlite3`` calls block, so they must not run on the event loop, and one
connection used from one thread needs no locking of our own. Every operation is submitted to a
single-worker executor and awaited with ``asyncio.wrap_future``; operations of one store
therefore run one at a time, in submission order. If the awaiting task is cancelled before its
operation started, the operation never runs; once started, it runs to COMMIT or ROLLBACK.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A process crash loses nothing
that was committed; an OS crash or power loss may lose the last transactions (never corrupts
the file). An fsync per commit would cost about a third of the throughput, so only the writes
that answer a durability promise (enqueue: the 202) are ``durable``: they return once the WAL
holding them is fsynced, by :class:`~mcpexec.store._sqlite_sync.WalSyncer` on its own thread
(what ``synchronous=FULL`` does, without blocking this thread during the fsync). A lost claim,
heartbeat or log write after an OS crash is recovered by the lease and retry machinery.

Migrations: numbered files ``migrations/sqlite/NNNN_name.sql``, as the design asks, applied by
the dialect-keyed runner of ``_migrations`` in order inside one ``BEGIN IMMEDIATE`` transaction
together with ``PRAGMA user_version = NNNN``. No migration library on top: yoyo-migrations was
tried and rejected: a process killed while holding its lock leaves a row in ``yoyo_lock`` that
blocks every later open until someone runs ``yoyo break-lock``, and it applies a migration and
records it in two separate transactions. SQLite's own write lock has neither problem: the OS
releases it when a process dies, and a second process opening at the same time waits, then
sees the new ``user_version`` and applies nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mcpexec.errors import McpexecError, StoreError
from mcpexec.store._migrations import Migration, migrate
from mcpexec.store._migrations import load_queries as named_queries
from mcpexec.store._sqlite_sync import WalSyncer

T = TypeVar("T")

DIALECT = "sqlite"
BUSY_RETRIES = 4
BUSY_BACKOFF_S = 0.02
BUSY_TIMEOUT_MS = 5000


def load_queries() -> dict[str, str]:
    """The named statements of ``sql/sqlite/queries.sql``."""
    return named_queries(DIALECT)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our BEGIN IMMEDIATE first, so split and run one by one.
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise StoreError("unterminated statement at the end of a migration")
    return statements


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


class Database:
    """One connection to one SQLite file, owned by one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # Writes waiting for the next group commit (see ``write``), durable and not.
        self._groups: dict[bool, list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]] = {
            True: [],
            False: [],
        }
        self._group_lock = threading.Lock()
        self._syncer = WalSyncer(path)
        # A durable group is committing or waiting for its sync: the next one gathers the
        # durable writes arriving meanwhile (one transaction and one fsync per group, as when
        # the fsync ran on this thread) while the other writes go on.
        self._durable_in_flight = False

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcpexec-sqlite")
        try:
            await self._submit(self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.wrap_future(executor.submit(self._disconnect))
        finally:
            executor.shutdown(wait=True)
            self._syncer.close()
            self._syncer = WalSyncer(self.path)  # the store may be opened again

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = False,
        grouped: bool = False,
    ) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (retried whole when busy).

        ``durable`` returns once the WAL holding the commit is fsynced (as ``synchronous = FULL``
        would, but the fsync runs on the syncer's thread, not this one): used where an answer
        promises durability to a client, e.g. the 202 of a submit, so that not even an OS crash
        loses an accepted run. Everything else can be redone or reaped.

        Durable writes, and those marked ``grouped``, are group-committed: writes that arrive
        while the thread is busy share the next transaction (each in its own savepoint, so one
        failing changes nothing of the others). For durable writes that is one fsync per batch
        instead of one per submit; for the frequent small writes of the executing runs
        (finishes, log chunks, progress) one BEGIN/COMMIT and one write of the pages they share
        (the same index leaves, the event log's tail) per batch. A grouped write may run before
        an ungrouped one submitted earlier; callers await their own write and never rely on the
        order of writes they did not await.
        """
        if not (durable or grouped):
            return await self._submit(lambda: self._transaction("BEGIN IMMEDIATE", fn))
        if self._executor is None:
            raise StoreError("the store is not open")
        future: Future[Any] = Future()
        with self._group_lock:
            group = self._groups[durable]
            group.append((fn, future))
            if durable:
                schedule = not self._durable_in_flight
                self._durable_in_flight = True
            else:
                schedule = len(group) == 1
        if schedule:
            self._executor.submit(self._commit_group, durable)
        result: T = await asyncio.wrap_future(future)
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction: a consistent snapshot, no write lock."""
        return await self._submit(lambda: self._transaction("BEGIN", fn))

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError("the store is not open")
        return await asyncio.wrap_future(self._executor.submit(fn))

    # -- on the database thread ----------------------------------------------------------------
    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves, 0600: it holds token hashes. SQLite gives the -wal and
        # -shm files the same permissions.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # Statement journals (a savepoint of the group commit, a statement whose triggers
            # write other tables) in memory: on disk each was a file created, written and
            # unlinked in /var/tmp for every such transaction. They hold one transaction's
            # undo pages, a few KB, and are gone at its end; not the database's durability.
            conn.execute("PRAGMA temp_store = MEMORY")
            self._conn = conn
            self._transaction("BEGIN IMMEDIATE", _migrate)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _transaction(self, begin: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is not open")

        def attempt() -> T:
            conn.execute(begin)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry_busy(attempt)

    def _commit_group(self, durable: bool) -> None:
        with self._group_lock:
            batch, self._groups[durable] = self._groups[durable], []
        # A caller that gave up before its turn is skipped; once started, a write runs to COMMIT.
        batch = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            if durable:
                self._next_durable_group()
            return

        def run_all(conn: sqlite3.Connection) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for fn, _ in batch:
                conn.execute("SAVEPOINT grouped")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:  # handed to that caller alone
                    conn.execute("ROLLBACK TO grouped")
                    outcomes.append((False, exc))
                conn.execute("RELEASE grouped")
            return outcomes

        try:
            outcomes = self._transaction("BEGIN IMMEDIATE", run_all)
        except BaseException as exc:
            for _, fut in batch:
                fut.set_exception(exc)
            if durable:
                self._next_durable_group()
            return

        def answer(sync_error: BaseException | None) -> None:
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if sync_error is not None:
                    # Committed but maybe not on the disk: the caller must not promise it.
                    fut.set_exception(sync_error)
                elif ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        if not durable:
            answer(None)
            return

        def synced(sync_error: BaseException | None) -> None:
            answer(sync_error)
            self._next_durable_group()

        try:
            self._syncer.after_commit(synced)
        except StoreError as exc:  # closing: nobody will sync it
            synced(exc)

    def _next_durable_group(self) -> None:
        """After a durable group's sync (on the syncer's thread) or failure: commit the
        durable writes that gathered meanwhile, if any."""
        with self._group_lock:
            if not self._groups[True]:
                self._durable_in_flight = False
                return
        executor = self._executor
        try:
            if executor is None:
                raise RuntimeError("closed")
            executor.submit(self._commit_group, True)
        except RuntimeError:  # the store is closing: nobody will commit them
            with self._group_lock:
                batch, self._groups[True] = self._groups[True], []
                self._durable_in_flight = False
            for _, fut in batch:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(StoreError("the store is closed"))

    @staticmethod
    def _retry_busy(fn: Callable[[], T]) -> T:
        for n in range(BUSY_RETRIES + 1):
            try:
                return fn()
            except McpexecError:
                raise
            except sqlite3.OperationalError as exc:
                # busy_timeout already waited; another process holds the write lock for long
                # (or a checkpoint/recovery is running): back off briefly and redo it all.
                if not _is_busy(exc) or n == BUSY_RETRIES:
                    raise StoreError(f"SQLite: {exc}") from exc
                time.sleep(BUSY_BACKOFF_S * 2**n)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}") from exc
        raise AssertionError("unreachable")


def _migrate(conn: sqlite3.Connection) -> None:
    def apply(migration: Migration) -> None:
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {migration.number}")

    migrate(DIALECT, conn.execute("PRAGMA user_version").fetchone()[0], apply)
