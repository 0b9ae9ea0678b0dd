"""Secrets: loading the server's named secrets, and redacting their values from everything a run
produces that mcpexec stores (output, progress, result, failure messages, notes).

Secrets come only from the server's configuration (``secrets`` in the TOML file, or
``MCPEXEC_SECRETS_FILE``: a file of ``NAME=value`` lines readable by the owner only), never from a
request: a spec merely names the ones it wants as environment variables.

Redaction is by value, also in base64 (standard and URL-safe, with and without padding), URL
encoding (``quote``/``quote_plus``) and hex. The output redactor holds back the last
``longest pattern - 1`` bytes of each stream so that a value split across two pipe reads is still
caught.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

from mcpexec.errors import SecretsError
from mcpexec.models import Stream

MIN_SECRET_LEN = 4  # shorter values would redact half the output and protect nothing
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def load_secrets_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, blank lines ignored). The file must be a regular
    file not readable or writable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretsError(f"secrets file {path}: {exc.strerror}") from None
    with open(fd, encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SecretsError(f"secrets file {path}: not a regular file")
        if st.st_mode & 0o077:
            raise SecretsError(
                f"secrets file {path}: mode {stat.S_IMODE(st.st_mode):o} lets others read or "
                "write it; chmod 600 it"
            )
        text = f.read()
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            # Never echo the line: it may hold a value.
            raise SecretsError(f"secrets file {path}, line {number}: expected NAME=value")
        out[name] = value
    return out


def check_secrets(secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        if not _NAME.match(name):
            raise SecretsError(f"secret name {name!r} is not a valid variable name")
        if len(value) < MIN_SECRET_LEN:
            raise SecretsError(
                f"secret {name}: values shorter than {MIN_SECRET_LEN} characters "
                "cannot be redacted reliably"
            )
        if "\0" in value:
            raise SecretsError(f"secret {name}: contains a NUL byte")


def _forms(value: bytes) -> set[bytes]:
    forms = {value, binascii.hexlify(value), binascii.hexlify(value).upper()}
    n = len(value)
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(enc(value))
        # The value at each offset within a base64 quantum: keep the characters its bytes alone
        # determine (the first and last ones also depend on the neighbouring bytes).
        for shift in range(3):
            encoded = enc(b"\0" * shift + value)
            core = encoded[-(-8 * shift // 6) : (8 * (shift + n)) // 6]
            forms.add(core)
    text = value.decode("utf-8", errors="surrogateescape")
    forms.add(quote(text, safe="").encode("utf-8", errors="surrogateescape"))
    forms.add(quote_plus(text, safe="").encode("utf-8", errors="surrogateescape"))
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


class Redactor:
    """Replaces every form of the given secret values by ``[redacted:NAME]``."""

    def __init__(self, secrets: dict[str, str]) -> None:
        table: dict[bytes, str] = {}
        for name, value in secrets.items():
            for form in _forms(value.encode()):
                table.setdefault(form, name)
        self._names = table
        # Longest first, so a form contained in another is not matched first.
        ordered = sorted(table, key=len, reverse=True)
        self._re = re.compile(b"|".join(re.escape(f) for f in ordered)) if ordered else None
        self.hold = max((len(f) for f in ordered), default=1) - 1
        self._pending: dict[Stream, bytes] = {}

    @property
    def active(self) -> bool:
        return self._re is not None

    def redact(self, data: bytes) -> bytes:
        if self._re is None:
            return data
        return self._re.sub(lambda m: f"[redacted:{self._names[m.group(0)]}]".encode(), data)

    def redact_text(self, text: str) -> str:
        if self._re is None:
            return text
        raw = text.encode("utf-8", errors="surrogateescape")
        return self.redact(raw).decode("utf-8", errors="replace")

    def feed(self, stream: Stream, data: bytes) -> bytes:
        """Redact a chunk of a stream; returns what is safe to pass on now."""
        if self._re is None:
            return data
        buf = self._pending.pop(stream, b"") + data
        out = bytearray()
        pos = 0
        for m in self._re.finditer(buf):
            out += buf[pos : m.start()]
            out += f"[redacted:{self._names[m.group(0)]}]".encode()
            pos = m.end()
        rest = buf[pos:]
        keep = min(self.hold, len(rest))
        # Never hold back more than could still start a match; the rest is safe.
        if keep:
            out += rest[: len(rest) - keep]
            self._pending[stream] = rest[len(rest) - keep :]
        else:
            out += rest
        return bytes(out)

    def flush(self, stream: Stream) -> bytes:
        return self.redact(self._pending.pop(stream, b""))
