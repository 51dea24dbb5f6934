"""`app.keys`: API keys for the HTTP API and the dashboard. A key's secret is shown once, when it
is created; only its SHA-256 is stored (keys are 32 random bytes, so a plain hash is enough: there
is nothing to guess). The CLI (`tether keys ...`) and the server call these same methods."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tether.clock import new_id
from tether.errors import ConfigurationError, TetherError
from tether.models import to_datetime
from tether.storage.server import ApiKeyRecord

if TYPE_CHECKING:
    from tether.app import Tether

KEY_PREFIX = "tk_"
TOUCH_EVERY = 60.0  # seconds between two writes of a key's last_used_at


class ApiKeyNotFound(TetherError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no API key with id or name {key!r} (see: tether keys list)")


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its secret only on the object `ApiKeys.create` returns."""

    id: str
    name: str
    prefix: str  # the secret's first characters, to tell keys apart
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    secret: str | None = None  # only on the object `create` returns

    @property
    def active(self) -> bool:
        """Whether the key was not revoked."""
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _to_key(record: ApiKeyRecord, secret: str | None = None) -> ApiKey:
    return ApiKey(id=record.id, name=record.name, prefix=record.prefix,
                  created_at=to_datetime(record.created_at),  # type: ignore[arg-type]
                  last_used_at=to_datetime(record.last_used_at),
                  revoked_at=to_datetime(record.revoked_at), secret=secret)


class ApiKeys:
    """`app.keys`: the API keys of the HTTP API and the dashboard (`tether keys` too)."""

    def __init__(self, app: Tether) -> None:
        self._app = app
        self._touched: dict[str, float] = {}

    def create(self, name: str = "default") -> ApiKey:
        """A new key. Its secret is in the returned object's `secret`, and nowhere else."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ConfigurationError("a key's name must be 1 to 100 characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKeyRecord(id=new_id("key"), name=name, prefix=secret[:10],
                              hash=hash_secret(secret), created_at=self._app.clock.now())
        self._app.storage.create_api_key(record)
        return _to_key(record, secret)

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, without their secrets."""
        return [_to_key(r) for r in self._app.storage.list_api_keys()]

    def revoke(self, key: str) -> ApiKey:
        """Revoke by id or name; requests with the key are refused from now on."""
        record = self._app.storage.revoke_api_key(key, self._app.clock.now())
        if record is None:
            raise ApiKeyNotFound(key)
        return _to_key(record)

    def verify(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        record = self._app.storage.find_api_key(hash_secret(secret))
        if record is None:
            return None
        now = time.monotonic()
        if now - self._touched.get(record.id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[record.id] = now
            self._app.storage.touch_api_key(record.id, self._app.clock.now())
        return _to_key(record)
