"""Dashboard sessions, CSRF tokens and log decoding (pure parts of the dashboard)."""

from __future__ import annotations

from pathlib import Path

from mcpexec.app import App
from mcpexec.dashboard import _safe_next
from mcpexec.dashboard.pages.runs import _decode
from mcpexec.dashboard.session import SESSION_S, Sessions
from mcpexec.executor.fake import FakeExecutor
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.tenancy import hash_token

KEY = b"k" * 64


def test_a_session_names_the_token_by_its_hash_until_it_expires() -> None:
    sessions = Sessions(KEY)
    cookie = sessions.cookie_for("secret-token", now=1000.0)
    assert "secret-token" not in cookie
    assert sessions.token_hash(cookie, now=1000.0 + SESSION_S - 1) == hash_token("secret-token")
    assert sessions.token_hash(cookie, now=1000.0 + SESSION_S + 1) is None


def test_a_tampered_or_foreign_session_is_refused() -> None:
    sessions = Sessions(KEY)
    cookie = sessions.cookie_for("t", now=1000.0)
    version, token_hash, expires, sig = cookie.split(".")
    later = f"{version}.{token_hash}.{int(expires) + 10**6}.{sig}"  # extended by hand
    other = f"{version}.{hash_token('admin')}.{expires}.{sig}"  # another token's hash
    for bad in (later, other, cookie + "0", "", "v1.x", "v2." + cookie[3:]):
        assert sessions.token_hash(bad, now=1000.0) is None
    assert Sessions(b"j" * 64).token_hash(cookie, now=1000.0) is None  # another key


def test_csrf_tokens_are_bound_to_the_session() -> None:
    sessions = Sessions(KEY)
    one, two = sessions.cookie_for("a", now=1.0), sessions.cookie_for("b", now=1.0)
    assert sessions.csrf_ok(one, sessions.csrf_for(one))
    assert not sessions.csrf_ok(one, sessions.csrf_for(two))
    assert not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok("", sessions.csrf_for(""))


def test_next_is_a_dashboard_path_only() -> None:
    assert _safe_next("/ui/runs?status=failed") == "/ui/runs?status=failed"
    bad_ones = ("https://evil.example/", "//evil.example/ui/", "/api/v1/runs", "/ui\\..", "",
                "/ui/x\r\nSet-Cookie: a=1", "/ui/\x00")  # fmt: skip
    for bad in bad_ones:
        assert _safe_next(bad) == ""


def test_log_text_keeps_a_cut_utf8_sequence_for_the_next_read() -> None:
    data = "é€😀".encode()
    for cut in range(len(data) + 1):
        text, used = _decode(data[:cut], final=False)
        rest, _ = _decode(data[used:], final=True)
        assert text + rest == "é€😀"
    assert _decode(b"ab\xe2\x82", final=True) == ("ab\ufffd", 4)


def test_the_session_key_is_made_once_private_and_shared_by_the_home(tmp_path: Path) -> None:
    def app() -> App:
        settings = Settings(home=tmp_path / "home")
        return App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "a"))

    first = app().session_key()
    path = tmp_path / "home" / "session-key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) == 64
    assert app().session_key() == first  # another process on the same home: the same key
    assert [p.name for p in path.parent.iterdir()] == ["session-key"]  # nothing left aside
