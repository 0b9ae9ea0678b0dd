"""A call to server-everything's ``echo`` through the gateway (``Gateway.call_tool``: name
resolution, JSON Schema check, slots, the pooled session, result cap) against a direct SDK
``Client`` call to the same server binary in the same run. Reports the added latency p50/p95
(goal <= 2 ms p50), calls/s at concurrency 1, 8 and 32 for both, and the cold start of a stdio
server (spawn → initialize → tools/list → first call); then the same server as ``serve``
runs it by default — under bubblewrap in a cgroup leaf with limits (``ServerConfinement``) —:
its cold start and the p50 of sequential calls.

Usage: .venv/bin/python bench/bench_gateway.py [N]   (servers from scripts/mcp-servers)
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from timing import pct, rate, timed

from mcpexec.gateway.config import parse_config
from mcpexec.gateway.gateway import Gateway
from mcpexec.server_confinement import ServerConfinement
from mcpexec.settings import Settings

CACHE = Path(os.environ.get("MCP_SERVERS_DIR") or Path.home() / ".cache" / "mcpexec-mcp-servers")
EVERYTHING = os.environ.get("TEST_MCP_EVERYTHING") or str(
    CACHE / "npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
GOAL_MS = 2.0


async def main(n: int) -> None:
    node = shutil.which("node")
    if node is None or not os.path.exists(EVERYTHING):  # noqa: ASYNC240 - once, at start
        sys.exit("bench_gateway: needs node and server-everything (run scripts/mcp-servers)")
    print(f"# bench_gateway  {time.strftime('%Y-%m-%dT%H:%M:%S')}")
    print(f"host cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  calls: {n}")
    args = {"message": "hello"}
    config = parse_config(
        {"mcpServers": {"everything": {"command": node, "args": [EVERYTHING]}}}, "bench"
    )
    params = StdioServerParameters(command=node, args=[EVERYTHING])
    async with (
        Client(params, cache=None) as direct,
        Gateway(config, max_concurrent_executions=64) as gateway,
    ):
        await gateway.list_tools()

        async def via_sdk() -> object:
            return await direct.call_tool("echo", args)

        async def via_gateway() -> object:
            return await gateway.call_tool("everything.echo", args)

        # Interleaved rounds so load changes hit both sides alike.
        sdk: list[float] = []
        gw: list[float] = []
        for _ in range(5):
            sdk += await timed(via_sdk, n // 5)
            gw += await timed(via_gateway, n // 5)
        rows = [
            ("p50 (ms)", statistics.median(sdk), statistics.median(gw)),
            ("p95 (ms)", pct(sdk, 95), pct(gw, 95)),
            ("mean (ms)", statistics.fmean(sdk), statistics.fmean(gw)),
        ]
        for concurrency in (1, 8, 32):
            total = max(200, n)
            rows.append(
                (
                    f"calls/s at concurrency {concurrency}",
                    await rate(via_sdk, concurrency, total),
                    await rate(via_gateway, concurrency, total),
                )
            )
    print(f"{'echo':<34}{'direct SDK':>12}{'gateway':>12}{'added':>10}")
    for label, a, b in rows:
        added = f"{b - a:+.2f}" if "ms" in label else f"{b / a:.2f}x"
        print(f"{label:<34}{a:>12.2f}{b:>12.2f}{added:>10}")
    added_p50 = statistics.median(gw) - statistics.median(sdk)
    verdict = "meets" if added_p50 <= GOAL_MS else "misses"
    print(f"added latency p50 {added_p50:.2f} ms: {verdict} the goal (<= {GOAL_MS:g} ms)")

    colds = []
    for _ in range(3):
        start = time.perf_counter()
        async with Gateway(config) as cold:
            await cold.call_tool("everything.echo", args)
            colds.append((time.perf_counter() - start) * 1000)
            if len(colds) == 3:  # a fresh server, measured as the sandboxed one below
                fresh = await timed(lambda: cold.call_tool("everything.echo", args), n // 5)
    print(
        "cold start of a stdio server (spawn, initialize, tools/list, first call): "
        f"median {statistics.median(colds):.0f} ms of {', '.join(f'{c:.0f}' for c in colds)}; "
        f"echo p50 {statistics.median(fresh):.2f} ms, p95 {pct(fresh, 95):.2f} ms "
        f"({n // 5} sequential calls)"
    )
    if shutil.which("bwrap") is None:
        print("sandboxed: skipped (no bwrap)")
        return
    boxed = parse_config(
        {
            "mcpServers": {
                "everything": {
                    "command": node,
                    "args": [EVERYTHING],
                    "read_only": [str(CACHE / "npm")],
                }
            }
        },
        "bench",
    )
    confinement = ServerConfinement.from_settings(Settings())
    colds = []
    try:
        for _ in range(3):
            start = time.perf_counter()
            async with Gateway(boxed, confinement=confinement, sandbox_default=True) as cold:
                await cold.call_tool("everything.echo", args)
                colds.append((time.perf_counter() - start) * 1000)
                if len(colds) == 3:
                    calls = await timed(lambda: cold.call_tool("everything.echo", args), n // 5)
    finally:
        await confinement.stop()
    print(
        "sandboxed (bwrap + cgroup leaf): cold start "
        f"median {statistics.median(colds):.0f} ms of {', '.join(f'{c:.0f}' for c in colds)}; "
        f"echo p50 {statistics.median(calls):.2f} ms, p95 {pct(calls, 95):.2f} ms "
        f"({n // 5} sequential calls)"
    )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
