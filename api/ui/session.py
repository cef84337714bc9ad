"""The console's session: one signed, HttpOnly, SameSite=Strict cookie, and its CSRF token.

The cookie carries the user's API token, encrypted (it is a long-lived secret; a cookie copied
from a browser must not reveal it), so every page asks the API's own token lookup again and a
revoked token ends the session at once. No server-side store: any API replica reads it.

Encryption is encrypt-then-MAC with HMAC-SHA256 for both: the keystream is HMAC(key, nonce ||
counter) (a PRF in counter mode), the tag is HMAC over everything else. The keys are derived
from ORDERFLOW_SECRET_KEY, or from a random per-process key when it is unset (sessions then
end when the API restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import cache

from services.config import Settings

COOKIE = "orderflow_console"
LIFETIME_SECONDS = 8 * 3600
# A visitor who has not signed in yet still gets a session (no token) so the login form
# itself carries a CSRF token.
ANONYMOUS_LIFETIME_SECONDS = 3600


@cache
def _process_secret() -> bytes:
    return secrets.token_bytes(32)


@cache
def _keys(secret_key: str | None) -> tuple[bytes, bytes]:
    root = secret_key.encode() if secret_key else _process_secret()
    sign = hmac.new(root, b"orderflow-console-sign", hashlib.sha256).digest()
    enc = hmac.new(root, b"orderflow-console-encrypt", hashlib.sha256).digest()
    return sign, enc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


@dataclass(frozen=True)
class ConsoleSession:
    sid: str
    expires: int
    token: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None


def new_session(token: str | None = None) -> ConsoleSession:
    """A fresh session id (a new one at every sign-in: no fixation)."""
    life = LIFETIME_SECONDS if token else ANONYMOUS_LIFETIME_SECONDS
    return ConsoleSession(secrets.token_urlsafe(18), int(time.time()) + life, token)


def dump(settings: Settings, sess: ConsoleSession) -> str:
    """The cookie value: payload and MAC, the token inside encrypted."""
    sign, enc = _keys(settings.secret_key)
    payload: dict[str, object] = {"sid": sess.sid, "exp": sess.expires}
    if sess.token is not None:
        nonce = secrets.token_bytes(16)
        raw = sess.token.encode()
        payload["tok"] = _b64(nonce + _xor(raw, _keystream(enc, nonce, len(raw))))
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    tag = _b64(hmac.new(sign, body.encode(), hashlib.sha256).digest())
    return f"{body}.{tag}"


def load(settings: Settings, value: str | None) -> ConsoleSession | None:
    """The session in a cookie, or None when it is missing, forged, altered or expired."""
    if not value or value.count(".") != 1:
        return None
    sign, enc = _keys(settings.secret_key)
    body, tag = value.split(".")
    want = _b64(hmac.new(sign, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, tag):
        return None
    try:
        payload = json.loads(_unb64(body))
        sid, expires = str(payload["sid"]), int(payload["exp"])
        token = None
        if "tok" in payload:
            blob = _unb64(payload["tok"])
            nonce, sealed = blob[:16], blob[16:]
            token = _xor(sealed, _keystream(enc, nonce, len(sealed))).decode()
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= time.time():
        return None
    return ConsoleSession(sid, expires, token)


def csrf_token(settings: Settings, sess: ConsoleSession) -> str:
    """The token every form of this session carries: bound to the session id."""
    sign, _ = _keys(settings.secret_key)
    return hmac.new(sign, b"csrf:" + sess.sid.encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, sess: ConsoleSession | None, sent: str | None) -> bool:
    if sess is None or not sent:
        return False
    return hmac.compare_digest(csrf_token(settings, sess), sent)
