"""Browser sessions of the review page: a bearer token sealed in a cookie.

Logging in exchanges an API token for a cookie holding that token and a random CSRF
token, encrypted and authenticated with Fernet (AES-CBC + HMAC-SHA256) under the server's
session key. The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict``
(other sites cannot send it) and ``Secure`` behind HTTPS. Every request opens the cookie
and authenticates the token through the token store again, so a revoked token ends its
sessions at once and a changed role shows on the next page.

Every state-changing form carries the session's CSRF token in a hidden field, checked
in constant time on POST. The login form itself is protected the same way by a short
pre-session cookie (``login_nonce``).

The key comes from ``NOETL_REVIEW_SECRET`` (any string; every server behind one address
needs the same); without it each server process makes a random one, so sessions end
when it restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "noetl_review"
LOGIN_COOKIE = "noetl_review_login"
COOKIE_PATH = "/review"
SESSION_SECONDS = 12 * 3600
LOGIN_SECONDS = 3600
SECRET_ENV = "NOETL_REVIEW_SECRET"


@dataclass(frozen=True, slots=True)
class Session:
    """What a session cookie holds: the API token it stands for and its CSRF token."""

    token: str
    csrf: str


def session_key(secret: str | None = None) -> bytes:
    """A Fernet key derived from ``secret`` (default ``$NOETL_REVIEW_SECRET``), or a
    random one when neither is set."""
    text = secret if secret is not None else os.environ.get(SECRET_ENV)
    if not text:
        return Fernet.generate_key()
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("utf-8")).digest())


class SessionSealer:
    """Seals and opens session and login cookies under one key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, token: str) -> tuple[str, Session]:
        """A new session for ``token``: the cookie value and what it holds."""
        session = Session(token, secrets.token_urlsafe(32))
        payload = json.dumps({"t": session.token, "c": session.csrf}).encode("utf-8")
        return self._fernet.encrypt(payload).decode("ascii"), session

    def open(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None when it is missing, forged or expired."""
        if not cookie:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode("ascii"), ttl=SESSION_SECONDS))
        except (InvalidToken, ValueError, UnicodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("t"), str):
            return None
        csrf = data.get("c")
        return Session(data["t"], csrf) if isinstance(csrf, str) else None

    def login_nonce(self) -> tuple[str, str]:
        """A CSRF token for the login form and the cookie that vouches for it."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._fernet.encrypt(nonce.encode("ascii")).decode("ascii")

    def check_login_nonce(self, cookie: str | None, submitted: str) -> bool:
        """Whether ``submitted`` is the nonce sealed in the login ``cookie``."""
        if not cookie or not submitted:
            return False
        try:
            nonce = self._fernet.decrypt(cookie.encode("ascii"), ttl=LOGIN_SECONDS)
        except (InvalidToken, ValueError, UnicodeError):
            return False
        return hmac.compare_digest(nonce, submitted.encode("utf-8"))


def csrf_matches(session: Session, submitted: str) -> bool:
    """Constant-time comparison of the form's CSRF field with the session's token."""
    return bool(submitted) and hmac.compare_digest(
        session.csrf.encode("utf-8"), submitted.encode("utf-8")
    )
