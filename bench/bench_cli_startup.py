"""CLI start-up time: wall-clock of `mcpexec --help`, `mcpexec runs` and `mcpexec show ID`
(against a port where nothing listens, so only start-up and one refused connection count),
median of N runs, optionally against another source tree for a before/after comparison.

    .venv/bin/python bench/bench_cli_startup.py [-n 15] [--src OTHER/src ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["runs"], ["show", "0" * 32], ["version"]]


def measure(src: Path, args: list[str], n: int) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "MCPEXEC_URL": "http://127.0.0.1:9",
        "MCPEXEC_TOKEN": "x",
    }
    code = "import sys; from mcpexec.cli import main; sys.argv[0] = 'mcpexec'; main()"
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, check=False
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=15)
    parser.add_argument("--src", action="append", type=Path, default=[])
    opts = parser.parse_args()
    trees = [Path(__file__).parents[1] / "src", *opts.src]
    print(f"median of {opts.n} runs, load average {os.getloadavg()[0]:.1f}")
    for args in COMMANDS:
        cells = [f"{measure(t, args, opts.n) * 1000:7.0f} ms" for t in trees]
        print(f"mcpexec {' '.join(args)[:20]:<20} " + "  ".join(cells))


if __name__ == "__main__":
    main()
