"""Where large values live: a directory (FileStore) or an S3-compatible bucket (s3.py).

A store holds immutable objects by key. Keys are time-ordered (`new_id`), so listing them in order
lists them by age, which the orphan sweep uses. Every store opened in this process is registered
by its location, so a reference (which names its store) can be read back by any reader."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from tether.errors import ConfigurationError, ObjectStoreUnavailable

STORE_ENV = "TETHER_OBJECT_STORE"


class ObjectStore(Protocol):
    """An object store: `location` is its URL (file:///dir, s3://bucket/prefix)."""

    location: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def keys(self, after: str = "") -> Iterator[str]:
        """Every key after `after`, in order."""
        ...


class FileStore:
    """Objects as files in a directory; each written to a temporary file, flushed to disk and
    renamed, so a reader never sees half an object."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.location = self.root.as_uri()

    def _path(self, key: str) -> Path:
        if "/" in key or key.startswith(".") or not key:
            raise ValueError(f"bad object key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"object store {self.location} cannot be written: {exc.strerror or exc}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"object store {self.location} cannot read {key}: {exc.strerror or exc}") from None

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as exc:
                raise ObjectStoreUnavailable(
                    f"object store {self.location} cannot delete {key}: {exc.strerror or exc}"
                ) from None

    def keys(self, after: str = "") -> Iterator[str]:
        try:
            names = sorted(n for n in os.listdir(self.root) if not n.startswith("."))
        except FileNotFoundError:
            return iter(())
        return iter([n for n in names if n > after])

    def temporaries(self) -> Iterator[Path]:
        """Half-written files a killed process left behind."""
        try:
            return iter(list(self.root.glob(".tmp-*")))
        except OSError:
            return iter(())


_registry: dict[str, ObjectStore] = {}
_lock = threading.Lock()


def register(store: ObjectStore) -> ObjectStore:
    """`store`, or the one registered at its location before (one per location per process)."""
    with _lock:
        return _registry.setdefault(store.location, store)


def registered(location: str) -> ObjectStore:
    store = _registry.get(location)
    if store is None:
        store = open_object_store(location)  # a reader that did not configure it (the CLI)
    return store


def open_object_store(url: str) -> ObjectStore:
    """`file:///path/to/dir` or `s3://bucket/prefix` (endpoint and credentials from the usual
    AWS settings: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)."""
    parsed = urlparse(url)
    known = _registry.get(url)
    if known is not None:
        return known
    if parsed.scheme == "file":
        if not parsed.path:
            raise ConfigurationError(f"no directory in object store URL {url!r}")
        return register(FileStore(Path(unquote(parsed.path))))
    if parsed.scheme == "s3":
        from tether.objects.s3 import S3Store

        return register(S3Store(parsed.netloc, parsed.path.strip("/")))
    raise ConfigurationError(f"unsupported object store {url!r}: use file:///path/to/dir or "
                             "s3://bucket/prefix")


def app_store(given: str | ObjectStore | None, database_url: str) -> ObjectStore | None:
    """An app's store: `given`, else TETHER_OBJECT_STORE, else for an SQLite database the
    directory `<file>-objects` beside it; None (values stay in the database) on PostgreSQL."""
    if given is not None and not isinstance(given, str):
        return register(given)
    url = given or os.environ.get(STORE_ENV, "").strip()
    if url:
        return open_object_store(url)
    from tether.storage import sqlite_path

    path = sqlite_path(database_url)
    return None if path is None else register(FileStore(path.with_name(path.name + "-objects")))
