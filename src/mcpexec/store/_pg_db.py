"""The PostgreSQL plumbing under ``PostgresStore``: a psycopg 3 connection pool, transactions
with error mapping and safe retries, numbered migrations, and the LISTEN/NOTIFY listener.

Transactions: every store operation is one ``async with pool.connection(), conn.transaction()``
at READ COMMITTED (``run``), or, for a read that is one statement (a token, a tenant, a run by
id), that statement alone in autocommit (``read``: the same snapshot, two round trips fewer).
The statements that must not interleave with another process take row locks (``FOR UPDATE``,
``SKIP LOCKED`` for the claim, a tenant's ``run_counts`` row for its queue limit) or a
transaction-scoped advisory lock (a tenant's running count at the claim), released by COMMIT
or by the server when a connection dies.

Retries: a transaction whose ``BEGIN`` failed on a dead pooled connection (the server
restarted, ``pg_terminate_backend``) did nothing and is retried at once on another connection
(the pool discards the broken one); a deadlock or serialization failure rolled everything back
and is retried too. A connection lost after ``BEGIN`` is not retried (the outcome of a COMMIT in
flight is unknown): the caller gets ``StoreUnavailable`` (503 with ``Retry-After``).

Durability: connections run with ``synchronous_commit = off`` (a server crash may lose the last
few hundred milliseconds of claims, heartbeats and logs; leases and retries recover them, like
SQLite's ``synchronous=NORMAL``); writes that answer a durability promise (a submit's 202) set
``synchronous_commit = on`` for their own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.abc import Buffer
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mcpexec.errors import McpexecError, StoreError, StoreUnavailable
from mcpexec.store._migrations import load_queries, pending_migrations
from mcpexec.store._shared import WorkSignal

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]
log = logging.getLogger(__name__)

DIALECT = "postgres"
CHANNEL = "mcpexec_work"
APPLICATION_NAME = "mcpexec"
CONNECT_TIMEOUT_S = 5
POOL_MIN, POOL_MAX = 1, 10
POOL_WAIT_S = 5.0  # a request waits this long for a connection, then 503
RETRIES = POOL_MAX + 2  # every pooled connection may be dead after a server restart
LISTEN_BACKOFF_S = (0.05, 2.0)
#: libpq's TCP settings for every connection: a connection to a server that became unreachable
#: (a cut network, not a refused one) fails within seconds instead of hanging for the kernel's
#: ~15 minutes of retransmissions, so a worker cut off from the database sees its store fail,
#: and reconnects when the network is back. Settings given in the URL win.
TCP_SETTINGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms unacknowledged
}
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('mcpexec.migrate', 0))"


class _NulSafeText(StrDumperUnknown):
    """PostgreSQL text cannot hold NUL (SQLite's can): free text that carries one (a failure
    message quoting a process's output) is stored with U+FFFD in its place instead of failing
    the write. Identifiers never contain NUL (the models refuse it at the edge)."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


class _NulSafeBinaryText(StrBinaryDumper):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def _adapt(conn: Conn) -> None:
    conn.adapters.register_dumper(str, _NulSafeText)
    conn.adapters.register_dumper(str, _NulSafeBinaryText)


def queries() -> dict[str, str]:
    return load_queries(DIALECT)


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "MCPEXEC_DATABASE_URL"
    host, db = info.get("host", "localhost"), info.get("dbname", "")
    return f"postgresql://{host}:{info.get('port', 5432)}/{db}"


def _tcp_settings(url: str) -> dict[str, int]:
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return dict(TCP_SETTINGS)
    return {k: v for k, v in TCP_SETTINGS.items() if k not in given}


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.tcp: dict[str, Any] = _tcp_settings(url)
        self.origin = uuid.uuid4().hex  # this store object, in NOTIFY payloads
        self.work = WorkSignal()
        self.version = 0
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listen_conn: Conn | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests read it)

    @property
    def listener_pid(self) -> int | None:
        conn = self._listen_conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def _connect(self) -> Conn:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
                **self.tcp,
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {describe(self.url)} (MCPEXEC_DATABASE_URL): "
                f"{reason}"
            ) from exc
        _adapt(conn)
        return conn

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await self._connect()  # the real reason, if the server cannot be reached
        try:
            self.version = await _migrate(conn)
        finally:
            await conn.close()

        async def configure(c: Conn) -> None:
            _adapt(c)
            await c.execute("SET synchronous_commit = off")

        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url,
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
                **self.tcp,
            },
            configure=configure,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=POOL_WAIT_S,
            open=False,
        )
        await pool.open(wait=True, timeout=POOL_WAIT_S)
        self._pool = pool
        try:
            self._listen_conn = await self._listen()
        except BaseException:
            await self.close()
            raise
        self._listener = asyncio.create_task(self._listen_loop(), name="mcpexec-pg-listen")

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            await conn.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- transactions --------------------------------------------------------------------------
    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, durable: bool = False) -> T:
        """Run ``fn`` in one transaction (see the module docstring for retries and errors)."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        for attempt in range(RETRIES + 1):
            started = False
            try:
                async with pool.connection() as conn, conn.transaction():
                    started = True
                    if durable:
                        await conn.execute("SET LOCAL synchronous_commit = on")
                    return await fn(conn)
            except McpexecError:
                raise
            except PoolTimeout as exc:  # before OperationalError: it is one
                raise StoreUnavailable(f"PostgreSQL: no connection ({exc})") from exc
            except psycopg.errors.TransactionRollback as exc:
                if attempt == RETRIES:
                    raise StoreUnavailable("PostgreSQL: too many conflicting transactions") from exc
            except psycopg.OperationalError as exc:
                if started or attempt == RETRIES:
                    raise StoreUnavailable(f"PostgreSQL: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn``, ONE read-only statement, on a pooled connection in autocommit: the
        statement is its own transaction (the same snapshot as inside ``BEGIN``/``COMMIT``),
        without those two round trips. Retried whenever the connection failed, since it
        changed nothing."""

        async def once(conn: Conn, retried: bool) -> T:
            return await fn(conn)

        return await self.statement(once)

    async def statement(self, fn: Callable[[Conn, bool], Awaitable[T]]) -> T:
        """Run ``fn`` in autocommit: ONE writing statement (after reads, if any), which the
        server commits as soon as it ends, so whatever it locks is held for its own execution
        and COMMIT, never across a round trip to this process (a busy event loop must not hold
        up other writers). The result arrives after the COMMIT. A connection that failed (a
        dead pooled connection after a server restart, or one lost mid-statement) is retried
        on another with ``retried=True``: ``fn`` must then find out whether its first try
        committed (the submit looks for its run by id, the finish reads the run) or not mind
        (a read; a claim, whose lost runs come back when their lease expires)."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        for attempt in range(RETRIES + 1):
            try:
                async with pool.connection() as conn:
                    return await fn(conn, attempt > 0)
            except McpexecError:
                raise
            except PoolTimeout as exc:
                raise StoreUnavailable(f"PostgreSQL: no connection ({exc})") from exc
            except psycopg.errors.QueryCanceled as exc:
                raise StoreUnavailable(f"PostgreSQL: {_first_line(exc)}") from exc
            except psycopg.OperationalError as exc:
                if attempt == RETRIES:
                    raise StoreUnavailable(f"PostgreSQL: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    # -- LISTEN/NOTIFY ---------------------------------------------------------------------------
    async def _listen(self) -> Conn:
        conn = await self._connect()
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        self.listening.set()
        return conn

    async def _listen_loop(self) -> None:
        """Wake ``work`` on every other store's NOTIFY; reconnect and re-subscribe when the
        connection drops (then wake once: a notification may have been missed meanwhile)."""
        delay = LISTEN_BACKOFF_S[0]
        while True:
            conn = self._listen_conn
            try:
                if conn is None:
                    conn = self._listen_conn = await self._listen()
                    log.info("PostgreSQL listener reconnected")
                    self.work.notify()
                    delay = LISTEN_BACKOFF_S[0]
                async for note in conn.notifies():
                    if note.payload != self.origin:
                        self.work.notify()
                raise psycopg.OperationalError("the listening connection ended")
            except (psycopg.Error, StoreError, OSError) as exc:
                if self.listening.is_set():
                    log.warning("PostgreSQL listener lost (%s); polling until it is back", exc)
                self.listening.clear()
                self._listen_conn = None
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_BACKOFF_S[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _migrate(conn: Conn) -> int:
    """Apply the pending migrations in ONE transaction under an advisory lock: a second process
    migrating at the same time waits, then finds nothing to do. Returns the version reached."""
    try:
        async with conn.transaction():
            await conn.execute(_MIGRATE_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            current = 0 if row is None else int(row["version"])
            pending = pending_migrations(DIALECT, current)
            for migration in pending:
                await conn.execute(migration.sql.encode())  # bytes: no placeholders parsed
            reached = current + len(pending)
            if row is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [reached])
            elif pending:
                await conn.execute("UPDATE schema_version SET version = %s", [reached])
            return reached
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL migration failed: {_first_line(exc)}") from exc
