"""A child process of a worker (started by pool.py): imports the worker's app, opens its own
storage, then runs the attempts the worker sends it, one at a time, with the engine's own code
(RunScope, Context / SyncContext, waits): steps, `once`, checkpoints, sleeps and child triggers
are written from here, fenced by the attempt's lease token like the worker's own writes.

Before each durable call RunScope.check() asks `ParentLease`: valid while the worker's clock
says so (the time came with the job or the last answer); past it the worker is asked, and
answers only once it confirmed the lease (renewing it in the database if it must). A worker
frozen or gone gives no answer, so nothing starts. The child dies with the worker
(PR_SET_PDEATHSIG) and ignores Ctrl-C (its own session): the worker decides when it stops.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from tether.engine import states, verdicts
from tether.engine.context import Context, SyncContext
from tether.engine.current import running
from tether.engine.scope import RunScope, current_scope, install_log_handler
from tether.engine.waits import Suspend
from tether.errors import LeaseLost
from tether.isolation.messages import (
    CONFIRM,
    MEMORY_LIMIT,
    READY,
    Ended,
    Failed,
    Job,
    SpanLog,
    shown_size,
)
from tether.observe.tracing import TraceIdsFormatter, job_context
from tether.serialization import dumps, loads, safe_text

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

log = logging.getLogger("tether.worker")

APP_ENV = "TETHER_ISOLATION_APP"  # module:attribute (or path.py:attribute) of the app
PATH_ENV = "TETHER_ISOLATION_PATH"  # the worker's sys.path, JSON
LOG_ENV = "TETHER_ISOLATION_LOG"  # the worker's logging: {"level": int, "format": str | None}
FLUSH_EVERY = 0.5  # seconds: metadata and log lines of a running attempt are stored this often

PR_SET_PDEATHSIG = 1
_unenforced_warned = False  # memory_limit on a system without /proc and RLIMIT_AS: said once


class ParentLease:
    """The child's side of the worker's LeaseClock (engine/leases.LeaseCheck)."""

    def __init__(self, conn: Connection, until: float) -> None:
        self.conn = conn
        self.until = until

    def confirm(self, lease: object) -> bool:
        if time.monotonic() < self.until:
            return True
        self.conn.send(CONFIRM)  # the worker answers once it knows (frozen: never)
        self.until = float(self.conn.recv())
        return time.monotonic() < self.until


def address_space() -> int:
    """This process's virtual size in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_cap(limit: int | None) -> Iterator[None]:
    """Hold the code run inside to `limit` more bytes of address space than the process has
    now: an allocation past it fails (MemoryError) instead of growing the process."""
    if limit is None:
        yield
        return
    if not sys.platform.startswith("linux"):
        global _unenforced_warned
        if not _unenforced_warned:
            _unenforced_warned = True
            log.warning("memory_limit is enforced on Linux only: attempts run without it here")
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space() + limit
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class Flusher(threading.Thread):
    """Stores the running attempt's metadata and log lines every FLUSH_EVERY seconds (the
    worker's `_flush_periodically`, for the attempt in this process)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="tether-child-flush")
        self.scope: RunScope | None = None

    def run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY)
            scope = self.scope
            if scope is None or scope.dead:
                continue
            try:
                scope.flush_now()
            except LeaseLost:
                scope.dead = True
            except RuntimeError:
                pass  # the task changed its metadata meanwhile: next time
            except Exception:
                log.debug("run %s: metadata and logs not stored yet", scope.record.id,
                          exc_info=True)


class ChildRunner:
    """Runs the jobs of one child process."""

    def __init__(self, app: Tether, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        self.loop = asyncio.new_event_loop()  # for async tasks, kept across jobs
        self.flusher = Flusher()
        self.flusher.start()

    def run(self, job: Job) -> Ended:
        app = self.app
        task = app.tasks.get(job.task_id)
        scope = RunScope(app.storage, app.clock, job.record, job.lease, dict(job.steps))
        scope.app, scope.inline_sleep = app, app.inline_sleep
        scope.leases = ParentLease(self.conn, job.until)
        spans = scope.trace = SpanLog(job.trace_context) if job.traced else None
        # the attempt's span current here too (its log records carry its ids)
        untrace = job_context(job.trace_context) if job.trace_context else None
        current_scope.set(scope)
        self.flusher.scope = scope
        retire = False
        try:
            try:
                if task is None:  # (the worker's app has it: the same module, changed since?)
                    transition = verdicts.failed(scope, dumps({
                        "message": f"the app the child process imported has no task "
                                   f"{job.task_id!r}", "type": "tether.UnknownTask"}),
                        app.clock.now())
                else:
                    transition, retire = self._call(task, scope, job.memory_limit)
                scope.flush_now()  # what the code logged or set since its last durable call
                scope.drain()  # its rows are on disk before the worker ends the attempt
            finally:
                self.flusher.scope = None
                if scope.pipeline is not None:
                    scope.pipeline.forget(scope.lease)
        except LeaseLost:
            scope.dead = True
            return Ended(None, spans=spans.spans if spans is not None else [])
        finally:
            current_scope.set(None)
            if untrace is not None:
                untrace()
        written = [replace(step, output=None) for key, step in scope.steps.items()
                   if key not in job.steps]
        return Ended(transition, scope.wait_step, written, retire,
                     spans.spans if spans is not None else [])

    def _call(self, task: Task[Any, Any], scope: RunScope,
              memory_limit: int | None) -> tuple[states.Transition, bool]:
        """The attempt's transition, and whether this process should be replaced after it."""
        now = self.app.clock.now
        try:
            scope.check()  # (the job may have waited in the pipe)
            payload = task.parse(loads(scope.record.payload))
        except LeaseLost:
            raise
        except Exception as exc:
            return verdicts.unparsable(exc), False
        try:
            with memory_cap(memory_limit):
                output = self._invoke(task, payload, scope)
                return verdicts.succeeded(self.app, task, scope, output), False
        except LeaseLost:
            raise
        except MemoryError as exc:
            if memory_limit is None:
                return verdicts.raised(scope, exc, now()), True
            error = {"message": f"the attempt ran out of its memory_limit of "
                                f"{shown_size(memory_limit)} (task {task.id!r})",
                     "type": MEMORY_LIMIT,
                     "traceback": safe_text("".join(traceback.format_exception(exc)))}
            return verdicts.failed(scope, dumps(error), now()), True
        except (Suspend, Exception) as exc:
            return verdicts.raised(scope, exc, now()), False
        except SystemExit as exc:  # sys.exit() in a task's code fails its attempt, as elsewhere
            return verdicts.raised(scope, RuntimeError(f"the task called sys.exit({exc.code!r})"),
                                   now()), True

    def _invoke(self, task: Task[Any, Any], payload: Any, scope: RunScope) -> Any:
        # tether.current_context() / current_sync_context() for code the body calls, as in the
        # worker (engine/attempt.py)
        if task.is_async:
            actx = Context(scope, task.id, self.loop)
            args = (payload, actx) if task.takes_ctx else (payload,)
            with running(actx):
                return self.loop.run_until_complete(task.fn(*args))
        sctx = SyncContext(scope, task.id, None)
        sargs = (payload, sctx) if task.takes_ctx else (payload,)
        with running(sctx):
            result = task.fn(*sargs)
            if inspect.isawaitable(result):
                result = self.loop.run_until_complete(result)
        return result


def _die_with(parent: int) -> None:
    """Be killed when the worker ends, however it ends (Linux); gone already: leave now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the child still ends when its pipe closes between jobs
    if os.getppid() != parent:
        os._exit(0)


def _logging() -> None:
    """The worker's level and format (which may name the trace ids: TraceIdsFormatter)."""
    settings = json.loads(os.environ.get(LOG_ENV) or "{}")
    fmt = settings.get("format") or "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=settings.get("level", logging.INFO), format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(TraceIdsFormatter(fmt))


def main(fd: int, parent: int) -> None:
    """The child's life: start, say READY (or Failed), then one job after another until the
    worker closes the pipe."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    _logging()
    from tether.loader import load_app

    try:
        app = load_app(os.environ[APP_ENV])
        app.storage  # noqa: B018 (opened now, not in the first attempt)
    except Exception as exc:
        conn.send(Failed(f"{type(exc).__name__}: {exc}"))
        return
    install_log_handler()
    runner = ChildRunner(app, conn)
    conn.send(READY)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(runner.run(job))
