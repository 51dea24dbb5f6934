"""Signatures for URLs that authenticate themselves (a token's callback URL): an HMAC-SHA256 of
`purpose` and `value` under a secret that the server creates once and keeps in storage, so every
server process on the same database signs and verifies alike."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.app import Tether

SETTING = "signing_secret"

_secrets: weakref.WeakKeyDictionary[Tether, bytes] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _secret(tether: Tether) -> bytes:
    with _lock:
        found = _secrets.get(tether)
    if found is None:
        stored = tether.storage.ensure_setting(SETTING, secrets.token_hex(32))
        found = stored.encode()
        with _lock:
            _secrets[tether] = found
    return found


def sign(tether: Tether, purpose: str, value: str) -> str:
    """A URL-safe signature of `value` for `purpose` ("token", ...)."""
    digest = hmac.new(_secret(tether), f"{purpose}\n{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(tether: Tether, purpose: str, value: str, signature: str) -> bool:
    """Whether `signature` is `sign(tether, purpose, value)` (compared in constant time)."""
    return hmac.compare_digest(sign(tether, purpose, value).encode(), signature.encode("utf-8",
                                                                                      "replace"))
