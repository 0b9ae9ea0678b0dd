"""``POST /execute`` of a real ``mcpexec serve`` (HTTP, bearer auth, the App, the gateway, the
pooled session) calling server-everything's ``echo``, against a direct SDK ``Client`` call to
the same server binary in the same run. Reports p50/p95 and the latency ``/execute`` adds, and
calls/s at concurrency 1, 8 and 32 for both; ``/execute`` twice: through ``httpx.AsyncClient``
and through a bare keep-alive HTTP/1.1 client (``timing.BareHttp``: the server's latency
without the client library's own cost). (``bench_gateway.py`` measures the gateway alone.)

Usage: .venv/bin/python bench/bench_execute.py [N]   (servers from scripts/mcp-servers)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import httpx
from mcp import Client, StdioServerParameters
from timing import BareHttp, pct, rate, timed

CACHE = Path(os.environ.get("MCP_SERVERS_DIR") or Path.home() / ".cache" / "mcpexec-mcp-servers")
EVERYTHING = os.environ.get("TEST_MCP_EVERYTHING") or str(
    CACHE / "npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
MCPEXEC = str(Path(sys.executable).parent / "mcpexec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(home: Path, node: str) -> tuple[subprocess.Popen[bytes], str, str]:
    config = home / "mcp_servers.json"
    server = {"command": node, "args": [EVERYTHING], "start": "eager", "max_concurrency": 64}
    config.write_text(json.dumps({"mcpServers": {"everything": server}}))
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_SANDBOX": "none",
        "MCPEXEC_MCP_CONFIG": str(config),
        "MCPEXEC_MAX_CONCURRENT_EXECUTIONS": "64",
    }
    cmd = [MCPEXEC, "serve", "--port", str(port), "--workers", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url, (home / "token").read_text().strip()
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a port not open yet: nothing to await
    proc.kill()
    sys.exit("bench_execute: serve did not start")


async def main(n: int) -> None:
    node = shutil.which("node")
    if node is None or not os.path.exists(EVERYTHING):  # noqa: ASYNC240 - once, at start
        sys.exit("bench_execute: needs node and server-everything (run scripts/mcp-servers)")
    print(f"# bench_execute  {time.strftime('%Y-%m-%dT%H:%M:%S')}")
    print(f"host cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  calls: {n}")
    args = {"message": "hello"}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, token = start_serve(Path(tmp), node)
        try:
            params = StdioServerParameters(command=node, args=[EVERYTHING])
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            headers = {"Authorization": f"Bearer {token}"}
            bare = BareHttp("127.0.0.1", int(url.rsplit(":", 1)[1]), headers)
            async with (
                Client(params, cache=None) as direct,
                httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http,
            ):

                async def via_sdk() -> object:
                    return await direct.call_tool("echo", args)

                body = {"tool_name": "everything.echo", "arguments": args}
                raw_body = json.dumps(body).encode()

                async def via_execute() -> object:
                    answer = await http.post("/execute", json=body)
                    assert answer.json()["status"] == "success", answer.text
                    return answer

                async def via_bare() -> object:
                    status, answer = await bare.post("/execute", raw_body)
                    assert status == 200, answer
                    assert b'"success"' in answer, answer
                    return answer

                calls = {"sdk": via_sdk, "httpx": via_execute, "bare": via_bare}
                samples: dict[str, list[float]] = {name: [] for name in calls}
                for _ in range(5):  # interleaved rounds: load changes hit every side alike
                    for name, call in calls.items():
                        samples[name] += await timed(call, n // 5)
                rows: list[tuple[str, float, float, float]] = [
                    ("p50 (ms)", *_three(statistics.median(s) for s in samples.values())),
                    ("p95 (ms)", *_three(pct(s, 95) for s in samples.values())),
                ]
                for concurrency in (1, 8, 32):
                    total = max(200, n)
                    rates = [await rate(call, concurrency, total) for call in calls.values()]
                    rows.append((f"calls/s at concurrency {concurrency}", *_three(rates)))
                await bare.aclose()
        finally:
            proc.terminate()
            proc.wait(30)
    head = f"{'direct SDK':>11}{'/execute httpx':>15}{'added':>8}{'bare':>9}{'added':>8}"
    print(f"{'echo':<31}{head}")
    for label, a, b, c in rows:
        if "ms" in label:
            print(f"{label:<31}{a:>11.2f}{b:>15.2f}{b - a:>+8.2f}{c:>9.2f}{c - a:>+8.2f}")
        else:
            print(f"{label:<31}{a:>11.1f}{b:>15.1f}{b / a:>7.2f}x{c:>9.1f}{c / a:>7.2f}x")


def _three(values: Iterable[float]) -> tuple[float, float, float]:
    a, b, c = values
    return a, b, c


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 500)
