"""Dashboard sessions and CSRF tokens (docs/dashboard.md).

A session is a cookie ``v1.<token hash>.<expiry>.<signature>``: the hash of the token the user
logged in with (never the token itself), when the session ends, and an HMAC-SHA256 of both under
the App's session key (``App.session_key``, shared by every process on the home). Each request
authenticates the hash again (``App.authenticate_session``), so revoking the token ends its
sessions at once. The cookie is HttpOnly, SameSite=Strict, Path=/ui, and Secure when the request
came over TLS (or ``public_url`` is https).

Every POST carries a CSRF token: an HMAC of the session cookie under the same key (so it is
bound to the session, needs no server state, and differs per session). The login form, before
any session exists, uses a double-submit token (a random cookie equal to a form field).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from mcpexec.tenancy import hash_token

COOKIE = "mcpexec_session"
LOGIN_COOKIE = "mcpexec_login"
#: A session lasts this long (or until its token is revoked or expires).
SESSION_S = 12 * 3600


class Sessions:
    def __init__(self, key: bytes, *, https: bool = False) -> None:
        self._key = key
        self._https = https

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    # -- sessions -----------------------------------------------------------------------------
    def cookie_for(self, token: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_S)
        body = f"{hash_token(token)}.{expires}"
        return f"v1.{body}.{self._sign(body)}"

    def token_hash(self, cookie: str | None, now: float | None = None) -> str | None:
        """The token hash of a valid, unexpired session cookie; ``None`` otherwise."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
            return None
        body = f"{parts[1]}.{parts[2]}"
        if not hmac.compare_digest(self._sign(body), parts[3]):
            return None
        if int(parts[2]) < (now if now is not None else time.time()):
            return None
        return parts[1]

    def secure(self, request: Request) -> bool:
        return self._https or request.url.scheme == "https"

    def set_cookie(self, response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=SESSION_S,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    # -- CSRF ---------------------------------------------------------------------------------
    def csrf_for(self, cookie: str) -> str:
        return self._sign(f"csrf.{cookie}")[:40]

    def csrf_ok(self, cookie: str | None, given: str | None) -> bool:
        if not cookie or not given:
            return False
        return hmac.compare_digest(self.csrf_for(cookie), given)

    @staticmethod
    def login_nonce() -> str:
        return secrets.token_urlsafe(24)
