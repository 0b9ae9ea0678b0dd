"""Process entry points for ``mcpexec serve`` and ``mcpexec worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from prometheus_client import start_http_server

from mcpexec.api.slow_clients import timed_protocol
from mcpexec.app import App
from mcpexec.asgi import DrainingServer, ServerApp, create_server_app
from mcpexec.bootstrap import build_app
from mcpexec.logfmt import configure as configure_logging
from mcpexec.paths import write_private
from mcpexec.settings import Settings, load_settings
from mcpexec.store._migrations import load_migrations
from mcpexec.store.url import describe_store, open_store, store_dialect

log = logging.getLogger(__name__)


class _Server(DrainingServer):
    """Says "ready" and records its URL in ``$MCPEXEC_HOME/url`` only once it listens (uvicorn
    runs the app's start-up before binding: a port in use used to fail after "ready"); stops
    claiming the moment a shutdown signal arrives (``DrainingServer``)."""

    def __init__(self, config: uvicorn.Config, settings: Settings, api: ServerApp) -> None:
        super().__init__(config, api.state.mcpexec)
        self.settings = settings
        self.api = api
        self.recorded = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        url = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
        write_private(self.settings.url_path, url + "\n")
        self.recorded = True
        app = self.api.state.mcpexec
        log.info(
            "mcpexec ready on %s: %d worker slot(s), isolation=%s, home=%s (token in %s)",
            url,
            app.worker_slots().total,
            app.isolation,
            self.settings.home,
            self.settings.token_path,
        )

    def forget_url(self) -> None:
        if self.recorded:
            self.settings.url_path.unlink(missing_ok=True)


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def run_migrate(*, home: Path | None = None) -> str:
    """``mcpexec db migrate``: open the store (which applies what is pending) and say where it
    stands; ``StoreError`` when it cannot (unreachable, newer than this code)."""
    settings = load_settings(home=home)
    version = asyncio.run(_open_store(settings))
    return f"{describe_store(settings.store_url)}: schema at version {version} (up to date)"


async def _open_store(settings: Settings) -> int:
    store = open_store(settings.store_url)
    await store.open()
    await store.close()
    dialect = store_dialect(settings.store_url)
    return 0 if dialect == "memory" else len(load_migrations(dialect))


def run_server(
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    home: Path | None = None,
    log_level: str | None = None,
    spool: Path | None = None,
    log_format: str | None = None,
    worker_labels: str | None = None,
) -> None:
    settings = load_settings(
        host=host, port=port, workers=workers, home=home, log_level=log_level,
        log_format=log_format, worker_labels=worker_labels,
    )  # fmt: skip
    _configure_logging(settings)
    # A store that cannot be opened (bad URL, unreachable, newer schema) is one line at the
    # command line, before uvicorn would log it as a failed start-up with a traceback.
    asyncio.run(_open_store(settings))
    api = create_server_app(settings, spool=spool)
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # JSON: uvicorn's own records go through our handler too (one format per process).
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        # Long-lived SSE followers must not hold up a shutdown; runs get their own grace.
        timeout_graceful_shutdown=3,
        lifespan="on",
        # The stdlib loop, not uvloop: with uvloop each run of `true` took 24 ms from start to
        # finish instead of 7.5 ms (its subprocess spawn and exit notification are slower), which
        # cost the engine two thirds of its throughput (docs/benchmarks.md).
        loop="asyncio",
        # Slow clients are timed out (uvicorn alone never times out reading a request).
        http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
    )
    server = _Server(config, settings, api)  # stops claiming at the signal, records its URL
    # uvicorn re-raises the signal that stopped it once it has shut down; with these no-op
    # handlers in place that re-raise is harmless and a clean shutdown exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
    try:
        server.run()
    finally:
        server.forget_url()


def run_worker(
    *,
    workers: int | None = None,
    home: Path | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    worker_labels: str | None = None,
) -> None:
    settings = load_settings(
        workers=workers,
        home=home,
        log_level=log_level,
        log_format=log_format,
        worker_labels=worker_labels,
    )
    _configure_logging(settings)
    asyncio.run(_worker_main(settings.workers, settings))


async def _worker_main(slots: int, settings: Settings) -> None:
    app = build_app(settings, pidfd_watcher=True)
    await app.open()
    await app.start_background(workers=max(slots, 1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info(
        "worker running with %d slot(s), labels %s",
        max(slots, 1),
        ",".join(settings.worker_labels) or "(none)",
    )
    with _metrics_endpoint(app, settings):
        await stop.wait()
    await app.close()


@contextlib.contextmanager
def _metrics_endpoint(app: App, settings: Settings) -> Iterator[None]:
    """With ``metrics_port``: this process's counters over plain HTTP (a thread of
    prometheus-client's own server) while the block runs. ``serve`` has ``/metrics`` instead."""
    if settings.metrics_port is None:
        yield
        return
    server, thread = start_http_server(
        settings.metrics_port, addr=settings.host, registry=app.metrics.registry
    )
    host, port = server.server_address[:2]
    log.info("metrics of this process on http://%s:%s/", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_scheduler(
    *, home: Path | None = None, log_level: str | None = None, log_format: str | None = None
) -> None:
    """``mcpexec scheduler``: the schedule loop alone (no HTTP, no workers) on the store in
    ``$MCPEXEC_HOME``; safe next to any number of serve processes (each fire is keyed)."""
    settings = load_settings(home=home, log_level=log_level, log_format=log_format)
    _configure_logging(settings)
    asyncio.run(_scheduler_main(settings))


async def _scheduler_main(settings: Settings) -> None:
    app = build_app(settings)
    await app.open(gateway=False)  # schedules only create runs: no MCP servers here
    await app.start_background(workers=0, reaper=False, scheduler=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("scheduler running on %s", settings.store_url)
    with _metrics_endpoint(app, settings):
        await stop.wait()
    await app.close()
