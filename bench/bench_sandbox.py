"""Sandbox benchmark: per-run overhead of each isolation mode against ``none``, in the same run.

For each command (``true`` and ``python3 -c pass``) and each mode (``none``: the plain subprocess
executor; ``default``: bwrap + seccomp + cgroup limits + tmpfs workdir as this host allows;
``strict`` where this host can run it), N sequential attempts through ``Executor.execute`` (the
whole attempt: workdir, spawn, supervise, cgroup sweep, collection, cleanup). Modes are
interleaved round by round so drift on a shared machine hits them alike. Prints median and p95
per mode and the overhead of each against ``none``; the goal is bwrap adding <= 8 ms median.

Usage::

    .venv/bin/python bench/bench_sandbox.py            # 200 rounds (about a minute)
    .venv/bin/python bench/bench_sandbox.py --n 50     # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from mcpexec.errors import SandboxUnavailable
from mcpexec.executor.base import ExecRequest, Executor
from mcpexec.executor.probe import probe
from mcpexec.executor.sandbox import SandboxConfig, SandboxExecutor
from mcpexec.executor.subprocess import SubprocessExecutor
from mcpexec.models import ExecSpec, Progress, Stream
from mcpexec.settings import Settings
from mcpexec.worker import effective_limits

COMMANDS = {"true": ["true"], "python3 -c pass": ["python3", "-c", "pass"]}


class NullSink:
    async def output(self, stream: Stream, data: bytes) -> None:
        pass

    async def progress(self, progress: Progress) -> None:
        pass

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:  # noqa: PLR0912 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="attempts per mode and command")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mcpexec-bench-"))
    root = os.geteuid() == 0
    work = Path("/tmp/mcpexec-sandbox") if root else tmp / "work"
    settings = Settings(home=tmp, run_path="/usr/bin:/bin")
    executors: dict[str, Executor] = {
        "none": SubprocessExecutor(tmp / "plain", run_path="/usr/bin:/bin")
    }
    executors["default"] = SandboxExecutor(work, SandboxConfig(), run_path="/usr/bin:/bin")
    if not probe("strict").missing_for_strict:
        executors["strict"] = SandboxExecutor(
            work, SandboxConfig(strict=True), run_path="/usr/bin:/bin"
        )
    started: dict[str, Executor] = {}
    try:
        for name, ex in executors.items():
            try:
                await ex.start()
            except SandboxUnavailable as exc:
                print(f"{name}: unavailable here: {exc}")
                continue
            started[name] = ex
        version = sys.version.split()[0]
        print(f"host: {platform.platform()}, {os.cpu_count()} CPUs, python {version}")
        for name, ex in started.items():
            print(f"{name:<8} isolation: {getattr(ex, 'isolation', '?')}")
        print(f"{args.n} sequential attempts per mode and command, modes interleaved\n")
        results: dict[str, dict[str, list[float]]] = {}
        for label, argv in COMMANDS.items():
            spec = ExecSpec(command=argv)
            request = ExecRequest("bench", 1, spec, effective_limits(spec, settings))
            samples: dict[str, list[float]] = {name: [] for name in started}
            for ex in started.values():  # warm-up
                await ex.execute(request, NullSink(), asyncio.Event())
            for _ in range(args.n):
                for name, ex in started.items():
                    t0 = time.perf_counter()
                    result = await ex.execute(request, NullSink(), asyncio.Event())
                    samples[name].append((time.perf_counter() - t0) * 1000)
                    if not result.succeeded:
                        raise SystemExit(f"{name} {label}: {result.failure}")
            results[label] = samples
        print(f"{'command':<18}{'mode':<9}{'median ms':>10}{'p95 ms':>9}{'+median':>9}{'+p95':>8}")
        verdicts: list[str] = []
        for label, samples in results.items():
            base_med = statistics.median(samples["none"])
            base_p95 = pct(samples["none"], 0.95)
            for name, values in samples.items():
                med, p95 = statistics.median(values), pct(values, 0.95)
                extra = "" if name == "none" else f"{med - base_med:>+9.2f}{p95 - base_p95:>+8.2f}"
                print(f"{label:<18}{name:<9}{med:>10.2f}{p95:>9.2f}{extra}")
                if name == "default":
                    ok = med - base_med <= 8.0
                    verdicts.append(
                        f"{label}: bwrap adds {med - base_med:.2f} ms median "
                        f"({'meets' if ok else 'MISSES'} the 8 ms goal)"
                    )
        print()
        for line in verdicts:
            print(line)
    finally:
        for ex in started.values():
            await ex.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
