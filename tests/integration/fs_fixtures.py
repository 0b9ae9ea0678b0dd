"""A real sandbox tree in tmp_path, with an outside world next to it, for the fs tests."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcpexec.gateway import ConfinedRoot, FsLimits, openat2_available

SECRET = "OUTSIDE-SECRET"


def _resolver_params() -> list[object]:
    in_ci = os.environ.get("CI") == "true"
    skip = not openat2_available() and not in_ci  # CI must have it: fail there, not skip
    return [
        pytest.param("openat2", marks=pytest.mark.skipif(skip, reason="no openat2 here")),
        pytest.param("walk"),
    ]


RESOLVERS = _resolver_params()


@dataclass
class Box:
    """The sandbox root (``box``), its prefix-trick sibling and the outside tree."""

    tmp: Path
    box: Path
    outside: Path
    sibling: Path
    root: ConfinedRoot

    def outside_digest(self) -> str:
        """Names, types and contents of everything outside the box (to prove nothing changed)."""
        h = hashlib.sha256()
        for base in (self.outside, self.sibling):
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath, name)
                    h.update(str(p).encode())
                    if p.is_file() and not p.is_symlink():
                        h.update(p.read_bytes())
        return h.hexdigest()


def build_box(tmp: Path, resolver: str, limits: FsLimits | None = None) -> Box:
    box, outside, sibling = tmp / "box", tmp / "outside", tmp / "box_evil"
    for d in (box / "sub", outside / "dir" / "sub", sibling):
        d.mkdir(parents=True)
    (box / "hello.txt").write_text("inside\n")
    (box / "sub" / "inner.txt").write_text("inner\n")
    (outside / "secret.txt").write_text(SECRET)
    (outside / "dir" / "secret.txt").write_text(SECRET)
    (sibling / "x").write_text(SECRET)
    # planted links, FIFOs and sockets
    (box / "link_out").symlink_to(outside / "secret.txt")
    (box / "linkdir").symlink_to(outside / "dir")
    (box / "rel_out").symlink_to("../outside/secret.txt")
    (box / "in_link").symlink_to("hello.txt")
    (box / "dangle").symlink_to(outside / "created-through-dangling.txt")
    (box / "dangle_dir").symlink_to(outside / "no-such-dir")
    (box / "loop1").symlink_to("loop2")
    (box / "loop2").symlink_to("loop1")
    (box / "devnull").symlink_to("/dev/null")
    (box / "sub" / "up").symlink_to("../../outside")
    os.mkfifo(box / "fifo")
    os.link(outside / "secret.txt", box / "hard")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(box / "sock"))
    sock.close()
    return Box(tmp, box, outside, sibling, ConfinedRoot(box, resolver=resolver, limits=limits))  # type: ignore[arg-type]


@pytest.fixture(params=RESOLVERS)
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Box]:
    box = build_box(tmp_path, request.param)
    assert box.root.resolver == request.param
    try:
        yield box
    finally:
        box.root.close()
