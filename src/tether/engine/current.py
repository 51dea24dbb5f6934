"""The running attempt's context, found without passing `ctx` down: `tether.current_context()`
for `async def` tasks, `tether.current_sync_context()` for plain `def` tasks.

The attempt runner sets a context variable around the task's body. asyncio copies context
variables into the tasks a body starts, and a sync task's thread runs in a copy made for it, so
code called from the body (a library, an agent's tool) sees the same context; code running
elsewhere (another run, a thread the body started itself) does not.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from tether.engine.context import Context, SyncContext
from tether.errors import NoRunContext


class _Slot:
    """The running attempt's context, made on first use: a task that takes no `ctx` and never
    asks for one pays nothing for it."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Context | SyncContext]) -> None:
        self._make: Callable[[], Context | SyncContext] | None = make
        self._value: Context | SyncContext | None = None

    def get(self) -> Context | SyncContext:
        if self._value is None:
            assert self._make is not None
            self._value, self._make = self._make(), None
        return self._value


_current: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar(
    "tether_current_context", default=None)


class running:  # lower case: used as a `with` statement, like a function
    """`with running(ctx):` makes the attempt's context current while the task's body runs (in
    this context copy): the context itself, or a function that makes it when first asked for.
    A class rather than a generator: about a microsecond per attempt."""

    __slots__ = ("_slot", "_token")

    def __init__(self, make: Callable[[], Context | SyncContext] | Context | SyncContext) -> None:
        self._slot = _Slot(make if callable(make) else (lambda: make))
        self._token: contextvars.Token[_Slot | None] | None = None

    def __enter__(self) -> None:
        self._token = _current.set(self._slot)

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)


def _get() -> Context | SyncContext | None:
    slot = _current.get()
    return None if slot is None else slot.get()


def current_context() -> Context:
    """The `Context` of the `async def` task running this code (its `ctx`), for code that is not
    handed `ctx`, such as a library called from the task. Raises `NoRunContext` outside a run,
    and in a plain `def` task (use `current_sync_context()` there)."""
    ctx = _get()
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, SyncContext):
        raise NoRunContext(
            f"current_context() is for async tasks; run {ctx.run_id} is a plain `def` task "
            f"(task {ctx.task_id!r}): call tether.current_sync_context() for its SyncContext")
    raise NoRunContext("current_context() was called outside a run: it works only in code that "
                       "an `async def` task's body calls while a worker executes it")


def current_sync_context() -> SyncContext:
    """The `SyncContext` of the plain `def` task running this code (its thread). Raises
    `NoRunContext` outside a run, and in an `async def` task (use `current_context()` there)."""
    ctx = _get()
    if isinstance(ctx, SyncContext):
        return ctx
    if isinstance(ctx, Context):
        raise NoRunContext(
            f"current_sync_context() is for plain `def` tasks; run {ctx.run_id} is an async task "
            f"(task {ctx.task_id!r}): call tether.current_context() for its Context")
    raise NoRunContext("current_sync_context() was called outside a run: it works only in code "
                       "that a plain `def` task's body calls while a worker executes it")
