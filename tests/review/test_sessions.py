"""Session cookies: sealed, shared by servers with one secret, and they expire."""

from __future__ import annotations

import json
import time

from cryptography.fernet import Fernet

from noetl_agent.review.sessions import (
    SESSION_SECONDS,
    SessionSealer,
    csrf_matches,
    session_key,
)


def test_servers_with_one_secret_open_each_others_sessions():
    cookie, session = SessionSealer(session_key("shared")).seal("noetl_token")
    assert "noetl_token" not in cookie
    assert SessionSealer(session_key("shared")).open(cookie) == session
    assert SessionSealer(session_key("other")).open(cookie) is None
    assert SessionSealer(session_key("")).open(cookie) is None  # random key without secret
    assert session_key("") != session_key("")


def test_a_session_expires_and_a_tampered_one_is_refused():
    key = session_key("s")
    sealer = SessionSealer(key)
    payload = json.dumps({"t": "tok", "c": "csrf"}).encode()
    old = Fernet(key).encrypt_at_time(payload, int(time.time()) - SESSION_SECONDS - 60)
    recent = Fernet(key).encrypt_at_time(payload, int(time.time()) - 60)
    assert sealer.open(old.decode()) is None
    opened = sealer.open(recent.decode())
    assert opened is not None and (opened.token, opened.csrf) == ("tok", "csrf")
    cookie, _ = sealer.seal("tok")
    assert sealer.open(cookie[:-4] + "AAAA") is None
    assert sealer.open("not a cookie") is None and sealer.open(None) is None


def test_csrf_tokens_are_per_session_and_login_nonces_per_form():
    sealer = SessionSealer(session_key("s"))
    _, first = sealer.seal("tok")
    _, second = sealer.seal("tok")
    assert first.csrf != second.csrf
    assert csrf_matches(first, first.csrf)
    assert not csrf_matches(first, second.csrf) and not csrf_matches(first, "")
    nonce, cookie = sealer.login_nonce()
    other, _ = sealer.login_nonce()
    assert sealer.check_login_nonce(cookie, nonce)
    assert not sealer.check_login_nonce(cookie, other)
    assert not sealer.check_login_nonce(None, nonce) and not sealer.check_login_nonce(cookie, "")
