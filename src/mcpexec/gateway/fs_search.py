"""``search_files``: glob matching and a bounded walk with directory descriptors.

The walk never follows a symlink (a subdirectory is opened with ``O_NOFOLLOW`` beneath its
parent's fd, a symlink or a name that stopped being a directory is skipped), is bounded in
depth, in directory entries examined and in results, and says when it stopped early.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

from mcpexec.gateway.confined import ConfinedRoot
from mcpexec.gateway.errors import InvalidArguments

MAX_PATTERN_LENGTH = 512
MAX_WILDCARDS = 16  # each `*` can backtrack; a bound keeps matching polynomial and small


def glob_regex(pattern: str, field_name: str = "pattern") -> re.Pattern[str]:
    """A regex for a glob over ``/``-separated relative paths.

    ``*`` and ``?`` stay within one component, ``**`` crosses components (``**/`` also matches
    nothing), ``[…]`` is a character class as in :mod:`fnmatch`.
    """
    if len(pattern) > MAX_PATTERN_LENGTH or pattern.count("*") > MAX_WILDCARDS:
        raise InvalidArguments(
            f"{field_name}: at most {MAX_PATTERN_LENGTH} characters and {MAX_WILDCARDS} '*'",
            field=field_name,
        )
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            out.append(fnmatch.translate(pattern[i : end + 1])[4:-3])  # strip "(?s:" … ")\Z"
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("(?s:" + "".join(out) + r")\Z")


@dataclass
class SearchResult:
    matches: list[str] = field(default_factory=list)
    truncated: bool = False
    visited: int = 0


def search(
    root: ConfinedRoot,
    path: str,
    pattern: str,
    exclude: list[str],
    max_results: int,
    max_depth: int,
) -> SearchResult:
    """Paths beneath ``path`` (written as the caller wrote ``path``) matching ``pattern``.

    ``pattern`` is matched against the path relative to ``path``; an entry whose relative path
    or name matches an exclude pattern is skipped with everything beneath it.
    """
    walk = _Walk(
        root, path, glob_regex(pattern), [glob_regex(p, "excludePatterns") for p in exclude]
    )
    walk.max_results, walk.max_depth = max_results, max_depth
    with root.open_dir(path) as fd:
        walk.run(fd, "", 1)
    given = path.rstrip("/")
    prefix = "" if given in ("", ".") else given + "/"
    walk.result.matches = [prefix + rel for rel in walk.result.matches]
    return walk.result


class _Walk:
    def __init__(
        self, root: ConfinedRoot, path: str, want: re.Pattern[str], skip: list[re.Pattern[str]]
    ) -> None:
        self.root, self.path, self.want, self.skip = root, path, want, skip
        self.result = SearchResult()
        self.max_results = self.max_depth = 0

    def run(self, dirfd: int, rel: str, depth: int) -> bool:
        """Walk one directory; False once a bound stopped the whole walk."""
        result = self.result
        entries: list[tuple[str, bool]] = []
        with os.scandir(dirfd) as it:
            for entry in it:
                if result.visited >= self.root.limits.max_search_visits:
                    result.truncated = True
                    break
                result.visited += 1
                entries.append((entry.name, entry.is_dir(follow_symlinks=False)))
        for name, is_dir in sorted(entries):
            child = f"{rel}{name}"
            if any(s.match(child) or s.match(name) for s in self.skip):
                continue
            if self.want.match(child):
                if len(result.matches) >= self.max_results:
                    result.truncated = True
                    return False
                result.matches.append(child)
            if not is_dir:
                continue
            if depth >= self.max_depth:
                result.truncated = True
                continue
            sub = self.root.open_subdir(dirfd, name, self.path)
            if sub is None:
                continue  # swapped for a symlink or removed since it was listed
            try:
                if not self.run(sub, child + "/", depth + 1):
                    return False
            finally:
                os.close(sub)
        return not (result.truncated and result.visited >= self.root.limits.max_search_visits)
