"""Agent providers (issue 16): how an ``agent`` step becomes a run.

A provider turns an agent step into the argv of the agent's CLI: ``create_session`` for the
first step of a session, ``resume_session`` for later ones, ``destroy_session`` when the
workflow run ends (``None``: nothing to run). The prompt (role instructions and the step's
context) is a file the engine writes as the run's input and pipes to the CLI's standard input.
``session_id`` reads the session id from what the CLI printed.

Built in: ``claude_code`` (``claude -p --output-format json``, ``--resume SESSION_ID``) and
``command`` (any CLI: an argv template). Others are found by entry point, group
``mcpexec.agent_providers``: a class with this interface, so a new one needs no core change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from mcpexec.errors import InvalidRequest
from mcpexec.workflows.spec import AgentSpec

ENTRY_POINT_GROUP = "mcpexec.agent_providers"


@dataclass(frozen=True, slots=True)
class AgentContext:
    prompt_file: str  # absolute path of the prompt in the run's working directory (at run time)
    workspace: str


class AgentProvider(Protocol):
    def create_session(self, agent: AgentSpec, ctx: AgentContext) -> list[str]: ...

    def resume_session(self, agent: AgentSpec, ctx: AgentContext, session_id: str) -> list[str]: ...

    def destroy_session(self, agent: AgentSpec, session_id: str) -> list[str] | None: ...

    def session_id(self, stdout: bytes) -> str | None: ...


def _last_json(stdout: bytes) -> dict[str, object] | None:
    """The last JSON object the CLI printed (a whole-output object, or the last line)."""
    text = stdout.decode("utf-8", "replace").strip()
    candidates = [text, *reversed(text.splitlines())]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


class ClaudeCode:
    """``claude -p --output-format json [--resume ID] [ARGS…] < prompt``."""

    def _base(self, agent: AgentSpec) -> list[str]:
        return [agent.executable or "claude", "-p", "--output-format", "json", *agent.args]

    def create_session(self, agent: AgentSpec, ctx: AgentContext) -> list[str]:
        return self._base(agent)

    def resume_session(self, agent: AgentSpec, ctx: AgentContext, session_id: str) -> list[str]:
        return [*self._base(agent), "--resume", session_id]

    def destroy_session(self, agent: AgentSpec, session_id: str) -> list[str] | None:
        return None  # claude keeps sessions on disk; nothing to stop

    def session_id(self, stdout: bytes) -> str | None:
        found = _last_json(stdout)
        value = None if found is None else found.get("session_id")
        return value if isinstance(value, str) and value else None


class CommandProvider(ClaudeCode):
    """Any agent CLI: ``agent.argv`` with ``{prompt_file}``, ``{session}``, ``{workspace}``
    replaced (whole arguments or inside them) by the engine's values; the prompt is on stdin
    too. Its session id, if it prints one, is read like claude's (``session_id`` in JSON)."""

    def _argv(self, agent: AgentSpec, ctx: AgentContext, session: str) -> list[str]:
        if not agent.argv:
            raise InvalidRequest("agent provider 'command' needs 'argv'", field="agent.argv")
        values = {"prompt_file": ctx.prompt_file, "session": session, "workspace": ctx.workspace}
        out = []
        for template in agent.argv:
            arg = template
            for key, value in values.items():
                arg = arg.replace("{" + key + "}", value)
            out.append(arg)
        return [*out, *agent.args]

    def create_session(self, agent: AgentSpec, ctx: AgentContext) -> list[str]:
        return self._argv(agent, ctx, "")

    def resume_session(self, agent: AgentSpec, ctx: AgentContext, session_id: str) -> list[str]:
        return self._argv(agent, ctx, session_id)


BUILTIN: dict[str, type] = {"claude_code": ClaudeCode, "command": CommandProvider}


def provider(name: str) -> AgentProvider:
    """The provider called ``name``: a built-in, else an entry point of the group."""
    if name in BUILTIN:
        built: AgentProvider = BUILTIN[name]()
        return built
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            found: AgentProvider = ep.load()()
            return found
    known = ", ".join(sorted(BUILTIN))
    raise InvalidRequest(
        f"agent provider {name!r} is unknown (built in: {known}; others by entry point "
        f"{ENTRY_POINT_GROUP!r})",
        field="agent.provider",
    )
