"""Job files: which names are jobs, and how a file's bytes become a ``RunRequest``.

Formats (seed 002's, accepted as written, plus mcpexec's optional fields):

- ``NAME.json`` with ``command`` (string) and ``args`` (list): an argv, no shell;
- ``NAME.json`` with a ``command`` string and no ``args``: run through ``/bin/sh -c``;
- ``NAME.json`` with mcpexec's own ``command`` list, ``shell`` or ``script``;
- ``NAME.txt`` / ``NAME.sh``: a shell script (a ``#!`` line naming bash, python or node picks
  that interpreter).

Everything here is pure: bytes in, a :class:`Job` or an :class:`InvalidJob` out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mcpexec.errors import InvalidRequest
from mcpexec.models import RunRequest

JSON_SUFFIXES = (".json",)
TEXT_SUFFIXES = (".txt", ".sh")
#: Names the spool writes itself or never takes: dotfiles (incl. in-progress ``.x.json``) and
#: ``*.tmp`` are how writers hide a file until it is complete.
IGNORED_SUFFIXES = (".tmp",)
#: mcpexec fields a JSON job may carry; everything else is the submitter's and copied back.
RUN_FIELDS = frozenset(
    {
        "timeout_s",
        "env",
        "inputs",
        "limits",
        "network",
        "secrets",
        "retry",
        "priority",
        "run_at",
        "labels",
    }
)
LABEL_FILE = "spool/file"
_SHEBANG = re.compile(r"^#!\s*(?:/usr)?(?:/local)?/bin/(?:env\s+)?(\w+)")
_SHEBANG_LANGUAGE = {"bash": "bash", "sh": "sh", "python3": "python", "python": "python"}
_MAX_NAME = 200


class InvalidJob(InvalidRequest):
    """The job file is not a valid job."""

    code = "invalid_job"


class InvalidJson(InvalidJob):
    """The job file is not valid JSON."""

    code = "invalid_json"


class UnknownFormat(InvalidJob):
    """The job file's name does not end in .json, .txt or .sh."""

    code = "unknown_format"


class JobTooLarge(InvalidJob):
    """The job file is larger than spool_max_job_bytes."""

    code = "job_too_large"


class BinaryJob(InvalidJob):
    """The job file is not UTF-8 text (binary content)."""

    code = "binary_job"


class InvalidSpec(InvalidJob):
    """The job does not describe a valid run."""

    code = "invalid_spec"


class InvalidResultFile(InvalidJob):
    """result_file must be a plain file name inside completed/."""

    code = "invalid_result_file"


class NotRegularFile(InvalidJob):
    """Only regular files are jobs: a symlink, FIFO, device or directory is refused unopened."""

    code = "not_regular_file"


@dataclass(frozen=True)
class Job:
    """A parsed job: the run to submit, and what the result file needs."""

    name: str
    kind: str  # "json" or "text"
    request: RunRequest
    #: The JSON object as submitted (unknown fields included); ``None`` for text jobs.
    original: dict[str, Any] | None = None
    result_file: str | None = None
    priority: int = 0


def is_candidate(name: str) -> bool:
    """Whether a directory entry in ``pending/`` is looked at at all (complete files only)."""
    return bool(name) and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def job_kind(name: str) -> str:
    if name.endswith(JSON_SUFFIXES):
        return "json"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    raise UnknownFormat(f"{name}: unknown format (the name must end in .json, .txt or .sh)")


def check_result_file(value: Any) -> str:
    """A plain name: no directory part, no dotfile, nothing that could leave ``completed/``."""
    if not isinstance(value, str) or not value:
        raise InvalidResultFile("result_file must be a non-empty string")
    if (
        "/" in value
        or "\\" in value
        or "\0" in value
        or value.startswith(".")
        or value.endswith(".tmp")
        or len(value) > _MAX_NAME
    ):
        raise InvalidResultFile(
            f"result_file {value!r} must be a plain file name (no '/', not starting with '.')",
            field="result_file",
        )
    return value


def decode_text(name: str, data: bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise JobTooLarge(f"{name}: larger than {max_bytes} bytes (spool_max_job_bytes)")
    if b"\0" in data:
        raise BinaryJob(f"{name}: binary content (a NUL byte)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BinaryJob(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_job(name: str, data: bytes, *, max_bytes: int, default_timeout_s: float) -> Job:
    """The job in ``data`` (the bytes of the file ``name``). Raises :class:`InvalidJob`."""
    kind = job_kind(name)
    text = decode_text(name, data, max_bytes)
    labels = {LABEL_FILE: name[:256]}
    if kind == "text":
        if not text.strip():
            raise InvalidSpec(f"{name}: the script is empty")
        spec: dict[str, Any] = _text_spec(text)
        spec.update(timeout_s=default_timeout_s, labels=labels)
        return Job(name=name, kind=kind, request=_validate(name, spec))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"{name}: invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidJson(f"{name}: a JSON job must be an object, not {type(obj).__name__}")
    spec = _json_spec(name, obj)
    spec.setdefault("timeout_s", default_timeout_s)
    user_labels = spec.get("labels")
    if user_labels is not None and not isinstance(user_labels, dict):
        raise InvalidSpec(f"{name}: labels must be an object", field="labels")
    spec["labels"] = {**(user_labels or {}), **labels}
    result_file = None
    if "result_file" in obj and obj["result_file"] is not None:
        result_file = check_result_file(obj["result_file"])
    request = _validate(name, spec)
    return Job(
        name=name,
        kind=kind,
        request=request,
        original=obj,
        result_file=result_file,
        priority=request.priority,
    )


def _text_spec(text: str) -> dict[str, Any]:
    match = _SHEBANG.match(text)
    language = _SHEBANG_LANGUAGE.get(match.group(1)) if match else None
    if language is not None:
        return {"script": {"language": language, "source": text}}
    return {"shell": text}


def _json_spec(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    if "task" in obj:
        raise InvalidSpec(f"{name}: 'task' jobs need task definitions, which do not exist yet")
    spec = {k: obj[k] for k in RUN_FIELDS if k in obj}
    command, args = obj.get("command"), obj.get("args")
    if isinstance(command, str):
        if args is None:
            spec["shell"] = command  # the seed's alternative format: a command line
        elif isinstance(args, list) and all(isinstance(a, str) for a in args):
            spec["command"] = [command, *args]
        else:
            raise InvalidSpec(f"{name}: args must be a list of strings", field="args")
    elif command is not None:
        if args is not None:
            raise InvalidSpec(f"{name}: args needs command to be a string", field="args")
        spec["command"] = command
    for native in ("shell", "script"):
        if native in obj:
            spec[native] = obj[native]
    return spec


def _validate(name: str, spec: dict[str, Any]) -> RunRequest:
    try:
        return RunRequest.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'job'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidSpec(f"{name}: {problems}") from None


def peek_priority(data: bytes) -> int:
    """The priority a pending file asks for, for ordering only (0 when unreadable: the real
    parse after the claim decides whether the job is valid)."""
    try:
        obj = json.loads(data)
        value = obj.get("priority", 0) if isinstance(obj, dict) else 0
        return int(RunRequest.model_validate({"shell": "x", "priority": value}).priority)
    except (ValueError, TypeError, ValidationError):
        return 0
