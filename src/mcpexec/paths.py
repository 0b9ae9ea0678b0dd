"""Where mcpexec keeps its files, without importing pydantic (the CLI's client commands start in
a fraction of a second because of it; ``settings`` builds on these)."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcpexec"


def home() -> Path:
    explicit = os.environ.get("MCPEXEC_HOME")
    return Path(explicit) if explicit else default_home()


def config_file() -> Path:
    """``MCPEXEC_CONFIG``, else ``config.toml`` in the home, else its ``config.yaml`` (or
    ``.yml``) when only that exists."""
    explicit = os.environ.get("MCPEXEC_CONFIG")
    if explicit:
        return Path(explicit)
    toml = home() / "config.toml"
    if not toml.exists():
        for name in ("config.yaml", "config.yml"):
            if (home() / name).exists():
                return home() / name
    return toml


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the start (never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
