"""``openat2(2)`` and ``renameat2(2)`` through ctypes (the standard library has neither).

Both raise :class:`OSError` with only the errno (no filename: the caller maps it to a message
that names the path as the caller gave it).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RENAME_NOREPLACE = 0x1

# The generic syscall table numbers openat2 437 on every architecture listed here.
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "i686": 437, "armv7l": 437, "riscv64": 437}
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276}


class _OpenHow(ctypes.Structure):
    _fields_ = (  # struct open_how, linux/openat2.h
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _raise_errno() -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def openat2(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    """A new descriptor for ``path`` beneath ``dirfd`` resolved under ``resolve`` rules."""
    number = _SYS_OPENAT2.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    how = _OpenHow(flags, mode, resolve)
    fd = int(
        _libc().syscall(
            ctypes.c_long(number),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        _raise_errno()
    return fd


@functools.cache
def openat2_available() -> bool:
    """Whether this kernel (and any seccomp filter around us) serves ``openat2``: probed once."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(
            root,
            b".",
            os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        )
    except OSError:  # ENOSYS (old kernel), EPERM (seccomp), E2BIG/EINVAL (old struct)
        return False
    finally:
        os.close(root)
    os.close(fd)
    return True


def renameat2(olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int) -> None:
    """Rename ``old`` to ``new`` (each relative to its directory fd) with ``flags``."""
    libc = _libc()
    args = (ctypes.c_int(olddirfd), ctypes.c_char_p(old), ctypes.c_int(newdirfd))
    if hasattr(libc, "renameat2"):  # glibc ≥ 2.28
        rc = int(libc.renameat2(*args, ctypes.c_char_p(new), ctypes.c_uint(flags)))
    else:
        number = _SYS_RENAMEAT2.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
        rc = int(libc.syscall(ctypes.c_long(number), *args, ctypes.c_char_p(new), flags))
    if rc < 0:
        _raise_errno()
