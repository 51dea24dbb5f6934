"""Turns at SQLite's write lock, taken in order between Tether's processes.

SQLite's write lock cannot be waited on: a writer that finds it taken can only try again, and a
retry either spins (taking CPU the holder may need: on two cores a producer and a worker each
spent a third of their time so) or sleeps past the release (a sleep ends tens of microseconds
late). So each writer of Tether first takes an exclusive `flock` on a file beside the database
(`<database>-tether-write`); the kernel hands it to a waiting writer the moment its holder lets
go, and SQLite's lock, taken right after, is then free. The turn is a queue, not the guarantee:
SQLite's own lock still excludes writers (one that takes no turn, such as the sqlite3 shell, is
retried as before), and a process that dies gives its turn up with its descriptors.

A turn is held only while its writer holds SQLite's lock or is about to take it: a writer that
finds the lock held all the same (by a writer that takes no turn) gives its turn back and
retries as before, so that a waiting process, even one frozen (SIGSTOP), holds up no other.
A thread that already holds a turn on a database takes none for a nested write on it (another
handle on the same file): it goes straight to SQLite's lock and its retries, which time out.
Where the file cannot be opened (a read-only folder, no `flock`), writers only retry."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a Unix: no turns
    fcntl = None  # type: ignore[assignment]

_held = threading.local()  # .paths: the turn files this thread holds
_forks = [0]  # forks of this process so far: a child opens descriptors of its own


def _forked() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _held_paths() -> set[str]:
    try:
        paths: set[str] = _held.paths
    except AttributeError:
        paths = _held.paths = set()
    return paths


class _Descriptor:
    """A thread's descriptor of the turn file, closed when the thread ends (its thread-local
    values go) or when the storage closes. One per thread: a flock excludes other open files,
    not other users of the same one."""

    def __init__(self, path: str) -> None:
        self.fork = _forks[0]
        self.fd = -1
        if fcntl is not None:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0 and self.fork == _forks[0]:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()


class Turns:
    """Turns at the write lock of one database file, for the threads of this process:
    `fd = turns.take()` before the write transaction, `turns.give(fd)` after it."""

    def __init__(self, database: Path) -> None:
        self.path = f"{database}-tether-write"
        self._local = threading.local()  # .descriptor: this thread's
        self._opened: weakref.WeakSet[_Descriptor] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _fd(self) -> int:
        descriptor: _Descriptor | None = getattr(self._local, "descriptor", None)
        if descriptor is None or descriptor.fork != _forks[0]:
            descriptor = self._local.descriptor = _Descriptor(self.path)
            with self._lock:
                self._opened.add(descriptor)
        return descriptor.fd

    def take(self) -> int:
        """Wait for this process's turn at the write lock; the descriptor to `give` back, or
        -1 when no turn was taken (nested in this thread's own turn, or no turn file)."""
        paths = _held_paths()
        if self.path in paths:
            return -1
        fd = self._fd()
        if fd < 0:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: retries alone
            return -1
        paths.add(self.path)
        return fd

    def give(self, fd: int) -> None:
        """End the turn `take` returned."""
        if fd >= 0:
            _held_paths().discard(self.path)
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptors (a later turn opens a new one in its thread)."""
        with self._lock:
            opened = list(self._opened)
            self._opened = weakref.WeakSet()
        for descriptor in opened:
            descriptor.close()
        self._local = threading.local()
