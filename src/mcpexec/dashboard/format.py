"""How the dashboard shows values (Jinja filters; pure)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment


def when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.utcoffset() is not None else "")


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def short(run_id: str) -> str:
    return run_id[:12]


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def install(env: Environment) -> None:
    env.filters.update(when=when, seconds=seconds, short=short, pretty=pretty, percent=percent)
