"""The mount syscalls the sandbox needs: a size-limited tmpfs per workdir, its unmount, and
finding the mounts a dead server left below a directory."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)  # libc is already loaded: no ldconfig run


def mount_tmpfs(path: Path, size_mb: int, uid: int, gid: int) -> None:
    inodes = max(4096, size_mb * 256)
    opts = f"size={size_mb}m,nr_inodes={inodes},mode=0700,uid={uid},gid={gid}"
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts.encode()):
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def umount(path: Path) -> bool:
    return bool(_libc.umount2(os.fsencode(path), _MNT_DETACH) == 0)


def mounts_under(root: Path) -> list[Path]:
    """Mount points strictly below ``root`` (deepest first), from ``/proc/self/mountinfo``."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for spaces
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
