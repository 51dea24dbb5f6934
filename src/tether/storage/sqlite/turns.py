"""Turns at SQLite's write lock, taken in order between Tether's processes.

SQLite's write lock cannot be waited on: a writer that finds it taken can only try again, and a
retry either spins (taking CPU the holder may need: on two cores a producer and a worker each
spent a third of their time so) or sleeps past the release (a sleep ends tens of microseconds
late). So each writer of Tether first takes an exclusive `flock` on a file beside the database
(`<database>-tether-write`); the kernel hands it to a waiting writer the moment its holder lets
go, and SQLite's lock, taken right after, is then free. The turn is a queue, not the guarantee:
SQLite's own lock still excludes writers (one that takes no turn, such as the sqlite3 shell, is
retried as before), and a process that dies gives its turn up with its descriptors.

A thread that already holds a turn on a database takes none for a nested write on it (another
handle on the same file): it goes straight to SQLite's lock and its retries, which time out.
Where the file cannot be opened (a read-only folder, no `flock`), writers only retry."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a Unix: no turns
    fcntl = None  # type: ignore[assignment]

_held = threading.local()  # .paths: the turn files this thread holds


class _Descriptor:
    """A thread's descriptor of the turn file, closed when the thread ends (its thread-local
    values go) or when the storage closes. One per thread: a flock excludes other open files,
    not other users of the same one."""

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.fd = -1
        if fcntl is not None:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0 and self.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()


class Turns:
    """Turns at the write lock of one database file, for the threads of this process."""

    def __init__(self, database: Path) -> None:
        self.path = f"{database}-tether-write"
        self._local = threading.local()  # .descriptor: this thread's
        self._opened: weakref.WeakSet[_Descriptor] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _fd(self) -> int:
        descriptor: _Descriptor | None = getattr(self._local, "descriptor", None)
        if descriptor is None or descriptor.pid != os.getpid():  # (a forked child opens its own)
            descriptor = self._local.descriptor = _Descriptor(self.path)
            with self._lock:
                self._opened.add(descriptor)
        return descriptor.fd

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold this process's turn at the write lock (waiting for it) within the block."""
        paths: set[str] = getattr(_held, "paths", set())
        fd = -1 if self.path in paths else self._fd()
        if fd < 0:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: retries alone
            yield
            return
        _held.paths = paths | {self.path}
        try:
            yield
        finally:
            _held.paths = paths
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptors (a later turn opens a new one in its thread)."""
        with self._lock:
            opened = list(self._opened)
            self._opened = weakref.WeakSet()
        for descriptor in opened:
            descriptor.close()
        self._local = threading.local()
