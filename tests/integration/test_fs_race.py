"""A directory swapped for a symlink to outside while calls are in flight: 0 escapes.

A subprocess exchanges ``box/d`` (a real directory) and ``box/d.swap`` (a symlink to
``outside/d``) atomically in a tight loop while threads read, list, write and create beneath
``d``. Every call must either act inside the box or be refused; nothing may be read from or
created in ``outside``. The same harness run with naive resolvers (a string check, and realpath
then open — the reference server's CVE pattern) must see escapes: that proves it can.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mcpexec.errors import McpexecError
from mcpexec.gateway import ConfinedRoot, call_fs_tool

from .fs_fixtures import RESOLVERS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SWAPPER = Path(__file__).with_name("fs_swapper.py")
MIN_SECONDS = 3.0
MAX_SECONDS = 15.0
REFUSED = {"path_outside_sandbox", "path_not_found", "not_a_directory"}


def make_tree(tmp: Path) -> tuple[Path, Path]:
    box, outside = tmp / "box", tmp / "outside"
    for base, word in ((box / "d", "INSIDE"), (outside / "d", "OUTSIDE")):
        (base / "sub").mkdir(parents=True)
        (base / "f.txt").write_text(word)
        (base / "sub" / "f.txt").write_text(word)
    (outside / "d" / "OUTSIDE_MARKER").write_text("")
    (box / "d.swap").symlink_to(outside / "d")
    return box, outside


Op = Callable[[int, int], str]  # (thread, iteration) -> "ok" | "refused" | "escape"


def confined_ops(root: ConfinedRoot) -> list[Op]:
    def classify(fn: Callable[[], str]) -> str:
        try:
            return fn()
        except McpexecError as exc:
            if exc.code not in REFUSED:
                raise
            return "refused"

    def read(rel: str) -> Op:
        def op(_t: int, _i: int) -> str:
            got = call_fs_tool(root, "read_text_file", {"path": rel})
            return "escape" if got["content"] != "INSIDE" else "ok"

        return lambda t, i: classify(lambda: op(t, i))

    def listing(t: int, i: int) -> str:
        got = call_fs_tool(root, "list_directory", {"path": "d"})
        return "escape" if "OUTSIDE_MARKER" in got["text"] else "ok"

    def search(t: int, i: int) -> str:
        got = call_fs_tool(root, "search_files", {"path": "d", "pattern": "**"})
        return "escape" if any("OUTSIDE_MARKER" in m for m in got["matches"]) else "ok"

    def write(t: int, i: int) -> str:
        call_fs_tool(root, "write_file", {"path": f"d/w-{t}-{i}.txt", "content": "W"})
        return "ok"

    def mkdir(t: int, i: int) -> str:
        call_fs_tool(root, "create_directory", {"path": f"d/sub/m-{t}-{i}"})
        return "ok"

    return [
        read("d/f.txt"),
        read("d/sub/f.txt"),
        lambda t, i: classify(lambda: listing(t, i)),
        lambda t, i: classify(lambda: write(t, i)),
        lambda t, i: classify(lambda: mkdir(t, i)),
        lambda t, i: classify(lambda: search(t, i)),
    ]


def naive_ops(box: Path, realpath: bool) -> list[Op]:
    def op(_t: int, _i: int) -> str:
        target = os.path.join(box, "d/f.txt")
        try:
            checked = os.path.realpath(target) if realpath else os.path.abspath(target)
            if not checked.startswith(f"{box}/"):
                return "refused"
            with open(target) as f:
                return "escape" if f.read() == "OUTSIDE" else "ok"
        except OSError:
            return "refused"

    return [op]


def run_race(box: Path, ops: list[Op], until: Callable[[Counter[str]], bool]) -> Counter[str]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                outcome = ops[(t + i) % len(ops)](t, i)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                return
            with lock:
                counts[outcome] += 1
            i += 1

    swapper = subprocess.Popen(
        [sys.executable, str(SWAPPER), str(box), str(MAX_SECONDS + 5)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None
    assert swapper.stdin is not None
    try:
        assert swapper.stdout.readline().strip() == "ready"
        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
        for thread in threads:
            thread.start()
        start = time.monotonic()
        while not stop.is_set() and time.monotonic() - start < MAX_SECONDS:
            with lock:
                done = time.monotonic() - start >= MIN_SECONDS and until(counts)
            if done:
                break
            stop.wait(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
            assert not thread.is_alive()
        swapper.stdin.close()
        swaps = int(swapper.stdout.readline())
        assert swapper.wait(timeout=10) == 0
    finally:
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait(timeout=10)
        swapper.stdout.close()
        if swapper.stdin is not None and not swapper.stdin.closed:
            swapper.stdin.close()
    if errors:
        raise errors[0]
    assert swaps > 0
    print(f"race: {dict(counts)} with {swaps} swaps")
    return counts


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_swapping_a_directory_for_a_symlink_never_escapes(tmp_path: Path, resolver: str) -> None:
    box, outside = make_tree(tmp_path)
    with ConfinedRoot(box, resolver=resolver) as root:  # type: ignore[arg-type]
        counts = run_race(box, confined_ops(root), lambda c: c["ok"] > 0 and c["refused"] > 0)
    assert counts["escape"] == 0
    assert counts["ok"] > 0  # the directory was there at times …
    assert counts["refused"] > 0  # … and the symlink at others: the race really ran
    assert sorted(p.name for p in (outside / "d").iterdir()) == ["OUTSIDE_MARKER", "f.txt", "sub"]
    assert [p.name for p in (outside / "d" / "sub").iterdir()] == ["f.txt"]
    assert (outside / "d" / "f.txt").read_text() == "OUTSIDE"
    assert (box / "d").is_dir()
    written = list((box / "d").glob("w-*.txt"))
    assert written  # writes that went through landed inside
    assert not list((box / "d").glob(".mcpexec-*"))


@pytest.mark.parametrize("realpath", [False, True], ids=["string-check", "realpath-then-open"])
def test_the_harness_catches_naive_resolvers(tmp_path: Path, realpath: bool) -> None:
    box, _ = make_tree(tmp_path)
    counts = run_race(box, naive_ops(box, realpath), lambda c: c["escape"] > 0)
    assert counts["escape"] > 0
