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


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite URL names (a relative one from the working directory, resolved), or
    None for another kind of database."""
    if urlparse(url).scheme != "sqlite":
        return None
    raw = url.split("://", 1)[1].split("?", 1)[0]
    path = raw[1:] if raw.startswith("/") else raw
    if not path:
        raise ConfigurationError(f"no file path in SQLite URL {url!r}")
    return Path(path).expanduser().resolve()


def open_storage(url: str | None = None) -> Storage:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (add `?synchronous=FULL` to
    survive power loss, not only killed processes), or `postgresql://...`.

    A missing SQLite file is created, but only in a directory that exists: a mistyped path is an
    error, not a new empty database somewhere. The default's `.tether` folder is the exception."""
    url = database_url(url)
    parsed = urlparse(url)
    path = sqlite_path(url)
    if path is not None:
        from tether.storage.sqlite.store import SQLiteStorage

        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return SQLiteStorage(path, synchronous=options.get("synchronous", "NORMAL"),
                             create_folder=url == DEFAULT_URL)
    if parsed.scheme in ("postgres", "postgresql"):
        from tether.storage.postgres.store import PostgresStorage

        return PostgresStorage(url)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://..."
    )


__all__ = ["DEFAULT_URL", "Storage", "database_url", "open_storage", "sqlite_path"]
