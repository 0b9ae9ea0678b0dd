"""Artifact bytes: the directory store vs the PostgreSQL store in one run (ratios to the first).

Each store writes an artifact of ``--mib`` MiB from a file (``BlobStore.put``) and reads it back
as a stream (``BlobStore.read``), ``--repeat`` times; the best of each is reported in MiB/s, with
the peak of Python allocations during a read (``tracemalloc``: it stays near one chunk, whatever
the artifact's size). PostgreSQL runs on a throwaway database ``mcpexec_bench_<random>`` on
``--pg`` (default: the loopback server, user postgres), dropped at the end.

Usage::

    .venv/bin/python bench/bench_blobs.py              # 256 MiB, 3 repeats
    .venv/bin/python bench/bench_blobs.py --mib 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import tempfile
import time
import tracemalloc
from pathlib import Path

import psycopg

from mcpexec.store.blobs import BlobStore, FileBlobStore
from mcpexec.store.postgres import PostgresStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


async def measure(
    blobs: BlobStore, source: Path, size: int, repeat: int
) -> tuple[float, float, int]:
    """(write MiB/s, read MiB/s, peak bytes allocated while reading), best of ``repeat``."""
    best_w = best_r = float("inf")
    peak = 0
    for i in range(repeat):
        with source.open("rb") as f:
            t0 = time.perf_counter()
            stored, _ = await blobs.put(f"run-{i}", "big.bin", f, size)
            best_w = min(best_w, time.perf_counter() - t0)
        assert stored == size
        tracemalloc.start()
        t0 = time.perf_counter()
        got = 0
        async for chunk in blobs.read(f"run-{i}", "big.bin"):
            got += len(chunk)
        best_r = min(best_r, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert got == size
        await blobs.delete_run(f"run-{i}")
    mib = size / (1024 * 1024)
    return mib / best_w, mib / best_r, peak


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.bin"
        with source.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1024 * 1024))
        results = {
            "directory": await measure(FileBlobStore(Path(tmp) / "a"), source, size, args.repeat)
        }
        name = f"mcpexec_bench_{secrets.token_hex(6)}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            info = psycopg.conninfo.conninfo_to_dict(args.pg)
            info["dbname"] = name
            store = PostgresStore(psycopg.conninfo.make_conninfo("", **info))
            await store.open()
            try:
                results["postgres"] = await measure(store.blob_store(), source, size, args.repeat)
            finally:
                await store.close()
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"{platform.node()} {os.cpu_count()} cpus, {args.mib} MiB artifact, best of {args.repeat}"
    )
    base_w, base_r, _ = results["directory"]
    print(
        f"{'store':<10} {'write MiB/s':>12} {'ratio':>6} {'read MiB/s':>11} {'ratio':>6} "
        f"{'read peak':>10}"
    )
    for store_name, (w, r, peak) in results.items():
        print(
            f"{store_name:<10} {w:>12.0f} {w / base_w:>6.2f} {r:>11.0f} {r / base_r:>6.2f} "
            f"{peak / (1024 * 1024):>7.1f} MiB"
        )


if __name__ == "__main__":
    asyncio.run(main())
