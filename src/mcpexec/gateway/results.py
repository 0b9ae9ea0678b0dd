"""A tool call's result as the gateway returns it, cut to a size cap with a note saying so."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mcp import types

_NOTE_BYTES = 200


@dataclass(frozen=True)
class ToolResult:
    """``content`` blocks (MCP JSON shape) and ``structured`` content, after the cap."""

    server: str
    tool: str
    content: list[dict[str, Any]] = field(default_factory=list)
    structured: Any = None
    is_error: bool = False
    truncated: bool = False
    #: JSON bytes of the result before any cut (an upper bound when small text blocks were
    #: not measured: see :func:`capped`).
    size: int = 0
    duration_ms: float = 0.0

    def text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    def output(self) -> Any:
        """What seed 001's ``/execute`` puts in ``output``: structured content if any, else
        ``{"content": text}`` when all blocks are text, else the blocks."""
        if self.structured is not None:
            return self.structured
        if all(b.get("type") == "text" for b in self.content):
            return {"content": self.text()}
        return {"content": self.content}

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "tool": self.tool,
            "content": self.content,
            "structuredContent": self.structured,
            "isError": self.is_error,
            "truncated": self.truncated,
        }


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


#: ``{"type":"text","text":""}`` and a comma, with room to spare.
_TEXT_BLOCK_BYTES = 32


def _small_text_blocks(content: list[dict[str, Any]], limit: int) -> bool:
    """Every block is ``{"type": "text", "text": str}`` and their JSON is surely <= ``limit``."""
    bound = 2
    for block in content:
        text = block.get("text")
        if len(block) != 2 or block.get("type") != "text" or not isinstance(text, str):
            return False
        bound += _TEXT_BLOCK_BYTES + 6 * len(text)
        if bound > limit:
            return False
    return True


def _cut_text(text: str, budget: int) -> str:
    data = text.encode()[: max(budget, 0)]
    return data.decode("utf-8", "ignore")


def capped(
    server: str,
    tool: str,
    content: list[dict[str, Any]],
    structured: Any,
    is_error: bool,
    limit: int,
    duration_ms: float = 0.0,
) -> ToolResult:
    """Keep blocks while they fit in ``limit`` bytes (JSON); cut the text block that
    straddles it; drop the rest and the structured content if it does not fit; then say so."""
    if structured is None and _small_text_blocks(content, limit):
        # Text blocks whose JSON cannot reach the limit (6 bytes per character at most, the
        # \uXXXX escape): no dump to measure them. ``size`` is then that bound, not exact.
        bound = sum(_TEXT_BLOCK_BYTES + 6 * len(b["text"]) for b in content)
        return ToolResult(server, tool, content, None, is_error, False, bound, duration_ms)
    total = _size(content) + (_size(structured) if structured is not None else 0)
    if total <= limit:
        return ToolResult(server, tool, content, structured, is_error, False, total, duration_ms)
    kept: list[dict[str, Any]] = []
    budget = max(limit - _NOTE_BYTES, 0)  # the note itself counts against the limit
    for block in content:
        size = _size(block)
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        if block.get("type") == "text" and budget > 64:
            kept.append({**block, "text": _cut_text(str(block.get("text", "")), budget - 64)})
        budget = 0
        break
    keep_structured = structured is not None and _size(structured) <= budget
    dropped = "" if keep_structured or structured is None else "; structured content dropped"
    note = (
        f"[output truncated by mcpexec: the result was {total} bytes, the limit is {limit}"
        f"{dropped}]"
    )
    kept.append({"type": "text", "text": note})
    return ToolResult(
        server,
        tool,
        kept,
        structured if keep_structured else None,
        is_error,
        True,
        total,
        duration_ms,
    )


def from_mcp(
    server: str, tool: str, result: types.CallToolResult, limit: int, duration_ms: float
) -> ToolResult:
    content = [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]
    return capped(
        server, tool, content, result.structured_content, result.is_error, limit, duration_ms
    )
