"""Storage backends behind one interface. `open_storage` picks one from a URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tether.errors import ConfigurationError
from tether.storage.base import Storage

DEFAULT_URL = "sqlite:///.tether/tether.db"


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("TETHER_DATABASE_URL") or DEFAULT_URL


def open_storage(url: str | None = None) -> Storage:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (add `?synchronous=FULL` to
    survive power loss, not only killed processes), or `postgresql://...`."""
    url = database_url(url)
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from tether.storage.sqlite.store import SQLiteStorage

        raw = url.split("://", 1)[1].split("?", 1)[0]
        path = raw[1:] if raw.startswith("/") else raw
        if not path:
            raise ConfigurationError(f"no file path in SQLite URL {url!r}")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return SQLiteStorage(Path(path), synchronous=options.get("synchronous", "NORMAL"))
    if parsed.scheme in ("postgres", "postgresql"):
        from tether.storage.postgres.store import PostgresStorage

        return PostgresStorage(url)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://..."
    )


__all__ = ["DEFAULT_URL", "Storage", "database_url", "open_storage"]
