"""Attacker for the race test: swap ``BOX/d`` (a directory) and ``BOX/d.swap`` (a symlink to
outside) with ``renameat2(RENAME_EXCHANGE)`` in a tight loop, so ``d`` is always one or the
other, until stdin closes or ``SECONDS`` pass. Prints ``ready`` once, the swap count at the end.

Usage: python fs_swapper.py BOX SECONDS
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

AT_FDCWD = -100
RENAME_EXCHANGE = 2


def main() -> None:
    box, seconds = sys.argv[1], float(sys.argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    a, b = os.fsencode(os.path.join(box, "d")), os.fsencode(os.path.join(box, "d.swap"))
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    deadline = time.monotonic() + seconds
    swaps = 0
    print("ready", flush=True)
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in range(200):
            if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            swaps += 1
    if swaps % 2:  # leave the directory where it started
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    print(swaps, flush=True)


if __name__ == "__main__":
    main()
