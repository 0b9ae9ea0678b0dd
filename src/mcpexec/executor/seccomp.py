"""The seccomp denylist bwrap loads before exec'ing the run's process (``--seccomp FD``).

Default action ALLOW; EPERM for the syscalls an ordinary program has no business making and that
widen the kernel attack surface or escape attempts (namespaces, mounts, ptrace, keyrings, bpf,
modules, ...); ``ioctl(TIOCSTI)``; ``clone(CLONE_NEWUSER)``; ``clone3`` answers ENOSYS so glibc
falls back to ``clone`` (whose flags a classic filter can inspect). ``strict`` also refuses
inet/inet6/packet/netlink sockets. Built with pyseccomp (ctypes over libseccomp) once per variant,
exported as BPF; each attempt gets its own memfd copy.
"""

from __future__ import annotations

import errno
import os
import tempfile
from functools import cache
from typing import Any

DENIED = (
    *("ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root"),
    *("unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open"),
    *("userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module"),
    *("delete_module", "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm"),
    *("open_by_handle_at", "name_to_handle_at", "fanotify_init", "quotactl", "move_mount"),
    *("open_tree", "fsopen", "fsmount", "fspick", "syslog"),
    *("io_uring_setup", "io_uring_enter", "io_uring_register"),
)
TIOCSTI = 0x5412
CLONE_NEWUSER = 0x10000000
AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 2, 10, 16, 17


def _module() -> Any:
    import pyseccomp

    return pyseccomp


def unavailable() -> str | None:
    """Why seccomp filters cannot be built here, or ``None``."""
    try:
        sc = _module()
    except (ImportError, OSError) as exc:  # the package, or libseccomp.so.2, is missing
        return f"pyseccomp/libseccomp not loadable: {exc}"
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as avail:  # closed: no ResourceWarning
            actions = avail.read().split()
    except OSError:
        return "the kernel has no seccomp (/proc/sys/kernel/seccomp/actions_avail missing)"
    if "errno" not in actions:
        return "the kernel's seccomp lacks the errno action"
    try:
        _bpf(False)
    except Exception as exc:
        return f"could not build a filter: {exc}"
    del sc
    return None


@cache
def _bpf(strict: bool) -> bytes:
    sc = _module()
    flt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            flt.add_rule(eperm, name)
        except (ValueError, RuntimeError, OSError):
            continue  # a syscall this libseccomp does not know
    flt.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    flt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if strict:
        nosupport = sc.ERRNO(errno.EAFNOSUPPORT)
        for family in (AF_INET, AF_INET6, AF_NETLINK, AF_PACKET):
            flt.add_rule(nosupport, "socket", sc.Arg(0, sc.EQ, family))
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


def filter_fd(strict: bool) -> int:
    """A fresh memfd holding the compiled filter, positioned at 0 (the caller closes it)."""
    data = _bpf(strict)
    fd = os.memfd_create("mcpexec-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
