"""Workdir.remove: the four-rmdir fast path for an untouched layout, the full walk otherwise."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mcpexec.executor.workdir import CONTROL_DIR, OUTPUT_DIR, TMP_DIR, Workdir


def _untouched(wd: Path, outside: Path) -> None:
    pass


def _file_in_root(wd: Path, outside: Path) -> None:
    (wd / "left.txt").write_text("x")


def _file_in_tmp(wd: Path, outside: Path) -> None:
    (wd / TMP_DIR / "a" / "b").mkdir(parents=True)
    (wd / TMP_DIR / "a" / "b" / "c").write_text("x")


def _symlink_out(wd: Path, outside: Path) -> None:
    # The run pointed its output dir at a directory outside: removal must not follow it.
    os.rmdir(wd / OUTPUT_DIR)
    (wd / OUTPUT_DIR).symlink_to(outside, target_is_directory=True)


def _control_gone(wd: Path, outside: Path) -> None:
    os.rmdir(wd / CONTROL_DIR)


@pytest.mark.parametrize(
    "change", [_untouched, _file_in_root, _file_in_tmp, _symlink_out, _control_gone]
)
def test_remove_takes_the_whole_tree_and_nothing_outside(
    tmp_path: Path, change: Callable[[Path, Path], None]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    parent = tmp_path / "work"
    parent.mkdir()
    wd = Workdir.create(parent, "run-1")
    assert sorted(p.name for p in wd.path.iterdir()) == sorted([CONTROL_DIR, OUTPUT_DIR, TMP_DIR])
    change(wd.path, outside)
    wd.remove()
    assert list(parent.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "precious"
    assert wd.fd == -1
