"""Wake-ups between processes, so that workers and waiting callers react in microseconds
instead of polling.

Two groups listen: "workers" (new runs, a released concurrency slot, a cancel) and "waiters"
(a run finished). Messages are hints: a listener always re-reads the database, and a lost
message only delays it until its polling fallback.

For SQLite, every listener binds a Unix datagram socket in a folder derived from the database
path; publishing sends one datagram to each socket of the group. A socket whose process died
refuses the datagram and is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Protocol

try:
    import fcntl
    import termios
except ImportError:  # not a Unix: every hint is sent
    fcntl = termios = None  # type: ignore[assignment]

WORKERS = "workers"
WAITERS = "waiters"
# to workers: new runs, every one ready now. It wakes them like "runs" does, and tells them no
# delayed run was added (a worker that knows when the next one is due need not look again)
READY = "ready"
# messages that only say "look at the database again", and say it alike, so that one unread
# stands for any other (not READY: it says more, that no delayed run was added)
HINTS = frozenset({"runs", "slot"})
_EMPTY = bytes(4)
DATAGRAM = 4096  # the most a listener reads at once


def packed(messages: list[str]) -> list[str]:
    """Messages (without newlines) joined by newlines into as few datagrams as fit DATAGRAM
    bytes each: a worker that ends ten runs in one commit sends their "done"s in one datagram,
    not ten (each listener reads one and splits it)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for message in messages:
        length = len(message.encode()) + 1
        if chunk and size + length > DATAGRAM:
            out.append("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(message)
        size += length
    if chunk:
        out.append("\n".join(chunk))
    return out


def after_transition(run_id: str, to: str, was_executing: bool,
                     is_child: bool = False) -> list[tuple[str, str]]:
    """Who to wake, and with what, after a run moved to `to` from outside its attempt (cancel,
    retry, reschedule, expiry, a delay passing). Each store sends these for what it commits.
    A child run that ended may have let its waiting parent go back to the queue."""
    messages = []
    if was_executing:
        messages.append((WORKERS, f"cancel {run_id}"))  # its worker stops the attempt
    if to in ("QUEUED", "DELAYED"):
        messages.append((WORKERS, "runs"))
    if to in ("COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "EXPIRED"):
        messages.append((WAITERS, f"done {run_id}"))
        if is_child:
            messages.append((WORKERS, "runs"))
    return messages


class Listener(Protocol):
    generation: int  # changes whenever the listener's connection (and so its fileno) is new

    def fileno(self) -> int:
        """The descriptor to watch for messages; -1 while there is no connection."""
        ...

    def drain(self) -> list[str]:
        """Every message received so far, without blocking."""
        ...

    def wait(self, timeout: float) -> list[str]:
        """Block until a message arrives or `timeout` passes."""
        ...

    def close(self) -> None: ...


class Bus(Protocol):
    def publish(self, group: str, message: str) -> None: ...

    def listen(self, group: str) -> Listener: ...


class SocketListener:
    generation = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> list[str]:
        messages: list[str] = []
        while True:
            try:
                messages += self.sock.recv(DATAGRAM).decode().split("\n")  # (see `packed`)
            except (BlockingIOError, InterruptedError):
                return messages

    def wait(self, timeout: float) -> list[str]:
        self.sock.settimeout(max(timeout, 0.0))
        try:
            first = self.sock.recv(DATAGRAM).decode()
        except (TimeoutError, BlockingIOError):
            return []
        finally:
            self.sock.setblocking(False)
        return [*first.split("\n"), *self.drain()]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # the last listener of this database removes the folder

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class SocketBus:
    """Unix datagram sockets in one folder per database file.

    Hints (HINTS: "a run may be ready") go to each listener from a socket of their own, and
    only while none is unread there: a listener that has not read the last one yet will read
    it and then look at the database, after the commit this hint is about. (The kernel counts
    a datagram against its sender until the listener reads it: SIOCOUTQ.) Thousands of
    triggers a second then wake a busy worker as often as it reads, not once each."""

    def __init__(self, key: str) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        self.folder = base / f"tether-{digest}"
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._hinters: dict[str, socket.socket] = {}  # listener path -> its hints' socket
        self._outq = bytearray(4)  # (read under the lock)
        self._lock = threading.Lock()
        self._seen_mtime = -1
        self._members: dict[str, list[str]] = {}

    def _group_members(self, group: str) -> list[str]:
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return []  # nobody listens
        if mtime != self._seen_mtime:
            members: dict[str, list[str]] = {}
            for name in os.listdir(self.folder):
                members.setdefault(name.split(".", 1)[0], []).append(str(self.folder / name))
            self._members, self._seen_mtime = members, mtime
            present = {path for paths in members.values() for path in paths}
            for path in [p for p in self._hinters if p not in present]:
                self._forget(path)  # that listener is gone
        return self._members.get(group, [])

    def publish(self, group: str, message: str) -> None:
        data = message.encode()
        hint = message in HINTS
        with self._lock:
            if self._sender.fileno() < 0:  # closed with its storage, which is in use again
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            for path in self._group_members(group):
                sender = self._hinter(path) if hint else self._sender
                if sender is None:
                    continue  # the last hint is still unread there
                try:
                    sender.sendto(data, path)
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # its process died without cleaning up
                    self._forget(path)
                except OSError:
                    pass  # a full queue: the listener is awake already

    def _hinter(self, path: str) -> socket.socket | None:
        """The socket for hints to `path`; None while a hint sent with it is unread."""
        sender = self._hinters.get(path)
        if sender is None:
            sender = self._hinters[path] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            return sender
        if fcntl is None:
            return sender
        try:
            fcntl.ioctl(sender.fileno(), termios.TIOCOUTQ, self._outq)
        except OSError:  # no such count here: every hint is sent
            return sender
        return None if self._outq != _EMPTY else sender

    def _forget(self, path: str) -> None:
        sender = self._hinters.pop(path, None)
        if sender is not None:
            sender.close()

    def close(self) -> None:
        """Close the sending sockets (a later `publish` opens new ones)."""
        with self._lock:
            self._sender.close()
            for path in list(self._hinters):
                self._forget(path)

    def listen(self, group: str) -> Listener:
        name = f"{group}.{os.getpid()}.{os.urandom(4).hex()}"
        for _ in range(3):
            self.folder.mkdir(mode=0o700, exist_ok=True)
            try:
                return SocketListener(self.folder / name)
            except FileNotFoundError:
                continue  # another process removed the empty folder meanwhile
        return SocketListener(self.folder / name)


class NullListener:
    """For platforms without Unix sockets: no messages, callers fall back to polling."""

    generation = 0

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()

    def fileno(self) -> int:
        return self._r.fileno()

    def drain(self) -> list[str]:
        return []

    def wait(self, timeout: float) -> list[str]:
        threading.Event().wait(timeout)
        return []

    def close(self) -> None:
        self._r.close()
        self._w.close()


class NullBus:
    def publish(self, group: str, message: str) -> None:
        return None

    def listen(self, group: str) -> Listener:
        return NullListener()


def local_bus(key: str) -> Bus:
    return SocketBus(key) if hasattr(socket, "AF_UNIX") else NullBus()
