"""The worker's child processes for tasks with `isolation="process"`: one started with the
worker, then one more whenever the last idle one is taken (a spare), up to the worker's
concurrency; kept warm between attempts, one attempt at a time each. A child that was killed
(max_duration, cancel, shutdown) or died is replaced at once.

Each child is a fresh interpreter (`python -c`, not a fork of the worker, whose threads and
database connections a fork would copy) that imports the worker's app by the module that holds
it, with the worker's sys.path and environment, in a session of its own (Ctrl-C on the
worker's terminal does not reach it). Everything runs on the worker's event loop: the pipes are
watched with add_reader, and a lease question from a child is answered off the loop only when
the database must be asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from tether.engine.leases import LeaseClock
from tether.engine.scope import RunScope
from tether.errors import ConfigurationError
from tether.isolation import child as child_side
from tether.isolation.messages import CONFIRM, READY, Died, Ended, Failed, Job, exit_reason
from tether.observe.tracing import RunTrace

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

log = logging.getLogger("tether.worker")

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when a child is stopped
START_TIMEOUT = 60.0  # a child that has not imported the app by then failed to start

BOOTSTRAP = ("import json, os, sys; "
             f"sys.path[:0] = json.loads(os.environ[{child_side.PATH_ENV!r}]); "
             "from tether.isolation.child import main; main(int(sys.argv[1]), int(sys.argv[2]))")

Outcome = Ended | Died


def app_source(app: Tether) -> str:
    """How a child imports `app`: `module:attribute` of a module defining one of its tasks
    (`path/to/file.py:attribute` for a script run as __main__)."""
    modules = {t.fn.__module__ for t in app.tasks.values()}
    for name in sorted(modules):
        module = sys.modules.get(name)
        if module is None:
            continue
        for attribute, value in vars(module).items():
            if value is app:
                if name == "__main__":
                    return f"{os.path.abspath(module.__file__ or '')}:{attribute}"
                return f"{name}:{attribute}"
    raise ConfigurationError(
        "tasks with isolation='process' run in child processes that import the app: define "
        "the Tether app as a global of the module that defines its tasks")


class Child:
    """One child process, as the worker sees it."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.conn = conn
        self.ready: asyncio.Future[None] = loop.create_future()
        self.reply: asyncio.Future[Outcome] | None = None  # the running job's
        self.lease: Any = None  # the running job's Lease
        self.gone = False  # killed or dead: its pipe is no longer watched
        self.spare = False  # started ahead of need: idle once ready, unless an attempt took it

    @property
    def pid(self) -> int:
        return self.proc.pid


class ProcessPool:
    """The child processes of one worker."""

    def __init__(self, app: Tether, leases: LeaseClock | None, size: int = 10) -> None:
        self.app = app
        self.leases = leases
        self.size = size  # at most this many children: the worker's concurrency
        self.source = app_source(app)
        self.idle: list[Child] = []
        self.children: set[Child] = set()
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._confirming: set[asyncio.Task[None]] = set()

    # -- attempts -----------------------------------------------------------------------------
    async def take(self) -> Child | Died:
        """A child ready for an attempt: an idle one, else a new one once it started (a
        warm spare makes that rare); Died when it could not start."""
        try:
            return await self._take()
        except ChildFailed as exc:
            return Died(str(exc))

    async def run(self, child: Child, task: Task[Any, Any], scope: RunScope) -> Outcome:
        """Run one attempt of `task` in `child` (from `take`); canceled (max_duration, cancel,
        shutdown), the child is killed."""
        lease = scope.lease
        until = math.inf if self.leases is None else self.leases.until(lease)
        traced = scope.trace
        job = Job(task.id, scope.record, lease, scope.steps, until, task.memory_limit,
                  traced=traced is not None,
                  trace_context=traced.encoded() if isinstance(traced, RunTrace) else None)
        child.lease = lease
        child.reply = asyncio.get_running_loop().create_future()
        try:
            child.conn.send(job)
        except OSError as exc:  # it died while idle, and its EOF is not read yet
            self._stop(child, "its pipe broke")
            return Died(f"the task's process (pid {child.pid}) could not be reached: {exc}")
        try:
            outcome = await child.reply
        except BaseException:
            self._stop(child, "its attempt was stopped")
            raise
        child.reply, child.lease = None, None
        if isinstance(outcome, Died):
            self._stop(child, "it died")
        elif outcome.retire:
            self._stop(child, "it ran out of its memory limit")
        else:
            self.idle.append(child)
        return outcome

    async def _take(self) -> Child:
        while self.idle:
            child = self.idle.pop()
            if not child.gone:
                self._keep_spare()
                return child
        # a spare still starting, else a new one: either is this attempt's once it is ready
        child = next((c for c in self.children if c.spare), None) or self._spawn()
        child.spare = False
        self._keep_spare()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.shield(child.ready)
        except TimeoutError:
            self._stop(child, "it did not start in time")
            raise ChildFailed(f"the task's process did not start within {START_TIMEOUT:g}s") \
                from None
        except asyncio.CancelledError:
            # the attempt was stopped meanwhile: the child serves the next one
            child.spare = True
            if child.ready.done():
                self._started(child, child.ready)
            raise
        return child

    def _keep_spare(self) -> None:
        """None idle nor starting: start one, so that the next attempt finds one ready."""
        if (not self.idle and not any(c.spare for c in self.children)
                and len(self.children) < self.size):
            self._warm_one()

    def _started(self, child: Child, ready: asyncio.Future[None]) -> None:
        """A child is ready (or failed to start): a spare becomes idle."""
        if child.spare and not child.gone and ready.exception() is None:
            child.spare = False
            self.idle.append(child)

    def warm(self) -> None:
        """Start a child now, so the first isolated attempt does not wait for one."""
        if not self.children:
            self._warm_one()

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self) -> Child:
        loop = self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        root = logging.getLogger()
        formats = [h.formatter._fmt for h in root.handlers if h.formatter is not None]
        env = dict(os.environ)
        env.update({child_side.APP_ENV: self.source,
                    child_side.PATH_ENV: json.dumps(sys.path),
                    child_side.LOG_ENV: json.dumps({"level": root.level,
                                                    "format": formats[0] if formats else None}),
                    "TETHER_DATABASE_URL": self.app.database_url})
        env.setdefault("MALLOC_ARENA_MAX", "2")  # fewer malloc arenas: address space is capped
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", BOOTSTRAP, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        child = Child(proc, Connection(ours.detach()), loop)
        child.ready.add_done_callback(lambda ready: self._started(child, ready))
        self.children.add(child)
        loop.add_reader(child.conn.fileno(), self._readable, child)
        log.debug("started child process %d for isolated tasks", proc.pid)
        return child

    def _readable(self, child: Child) -> None:
        try:
            message = child.conn.recv()
        except (EOFError, OSError):
            self._ended(child)
            return
        except Exception as exc:  # a reply that does not unpickle here: the child is stopped
            log.exception("child process %d sent what the worker cannot read", child.pid)
            if child.reply is not None and not child.reply.done():
                child.reply.set_result(Died(f"the task's process (pid {child.pid}) sent a reply "
                                            f"the worker could not read: {exc!r}"))
            return
        self._received(child, message)

    def _received(self, child: Child, message: Any) -> None:
        if isinstance(message, Ended):
            if child.reply is not None and not child.reply.done():
                child.reply.set_result(message)
        elif message == CONFIRM:
            confirming = asyncio.ensure_future(self._confirm(child))
            self._confirming.add(confirming)
            confirming.add_done_callback(self._confirming.discard)
        elif message == READY:
            if not child.ready.done():
                child.ready.set_result(None)
        elif isinstance(message, Failed):
            log.error("a child process for isolated tasks failed to start: %s", message.message)
            if not child.ready.done():
                child.ready.set_exception(ChildFailed(
                    f"the task's process failed to start: {message.message}"))

    async def _confirm(self, child: Child) -> None:
        """A child asks whether its lease is still held, its time having passed: the worker's
        LeaseClock decides (one renewal in the database, off the loop, when it must)."""
        lease, leases = child.lease, self.leases
        if lease is None:
            until = 0.0
        elif leases is None:
            until = math.inf
        elif leases.valid(lease) or await asyncio.to_thread(leases.confirm, lease):
            until = leases.until(lease)
        else:
            until = 0.0
        if not child.gone and child.lease is lease:
            with contextlib.suppress(OSError):  # it died meanwhile: its EOF says so
                child.conn.send(until)

    def _ended(self, child: Child) -> None:
        """The child's pipe closed: it exited or was killed; learn how (off the loop)."""
        self._forget(child)
        proc = child.proc
        started = child.ready.done() and child.ready.exception() is None
        if started and child.reply is None and not self.closed and not self.idle:
            self._warm_one()  # an idle child died: keep one ready (not one that failed to start)

        def settle(returncode: int | None) -> None:
            reason = f"the task's process (pid {proc.pid}) {exit_reason(returncode)}"
            if not child.ready.done():
                child.ready.set_exception(ChildFailed(reason))
            if child.reply is not None and not child.reply.done():
                child.reply.set_result(Died(reason))

        loop = self._loop
        assert loop is not None

        def reap() -> None:
            try:
                code: int | None = proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, code)

        threading.Thread(target=reap, daemon=True, name="tether-child-reap").start()

    def _forget(self, child: Child) -> None:
        if child.gone:
            return
        child.gone = True
        self.children.discard(child)
        if child in self.idle:
            self.idle.remove(child)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(child.conn.fileno())
        child.conn.close()

    def _stop(self, child: Child, why: str) -> None:
        """Kill a child (SIGTERM, SIGKILL after KILL_GRACE) and start its replacement."""
        if not child.gone:
            log.info("stopping child process %d: %s", child.pid, why)
        self._forget(child)
        kill(child.proc)
        if not self.closed and not self.idle:
            self._warm_one()

    def _warm_one(self) -> None:
        self._spawn().spare = True

    def close(self) -> None:
        """Stop every child (the worker is stopping)."""
        self.closed = True
        for child in list(self.children):
            self._forget(child)
            kill(child.proc)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM now, SIGKILL after KILL_GRACE if it still runs; reaped on a thread."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return

    def reap() -> None:
        try:
            proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    threading.Thread(target=reap, daemon=True, name="tether-child-kill").start()


class ChildFailed(Exception):
    """A child process could not start."""

