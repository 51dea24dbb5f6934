"""`ctx`, the second parameter of a task: steps, once-steps, checkpoints, metadata and logging.

`Context` is for `async def` tasks; `SyncContext` offers the same calls without `await` for plain
`def` tasks, which run in a thread. Both delegate the bookkeeping to the attempt's `RunScope`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tether.durations import Duration, seconds, until
from tether.engine import acquire, gathering, patches, waits
from tether.engine.scope import Metadata, RunScope, StepCall
from tether.engine.triggering import batch_items, tag_list
from tether.errors import RunFailed
from tether.handles import RunHandle
from tether.models import RunResult, Token
from tether.options import Retry
from tether.rate_limits import check_name
from tether.serialization import loads
from tether.tokens import to_token


class _Base:
    """What both flavours share: who the run is, its checkpoint state, metadata and logger."""

    def __init__(self, scope: RunScope, task_id: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self._scope = scope
        self._loop = loop
        self.run_id = scope.record.id
        """This run's id (`run_...`): the same in every attempt and after every wait."""
        self.task_id = task_id
        """The id of the task this run executes."""
        self.attempt = scope.lease.attempt
        """The attempt number, from 1. A retry after a failure or a crash is the next attempt;
        a run that resumes after a durable wait goes on with the same number."""
        self.tags: list[str] = loads(scope.record.tags)
        """The run's tags, sorted, as stored when this attempt started."""
        self.payload: Any = loads(scope.record.payload)
        """The payload as stored (JSON values). The task function's first argument is the same
        value, parsed into the payload model when that parameter is annotated with one."""
        self.logger = logging.LoggerAdapter(logging.getLogger(f"tether.run.{task_id}"),
                                            {"run_id": self.run_id})
        """A logger (`tether.run.<task id>`, INFO and above) whose records are attached to the
        run's log, as are the records of any other logger emitted while the run executes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} run={self.run_id} attempt={self.attempt}>"

    @property
    def state(self) -> Any:
        """The value of the last `checkpoint`, None before any."""
        return self._scope.state

    @property
    def metadata(self) -> Metadata:
        """The run's metadata, a dict: what is set, deleted, updated, popped, cleared or
        `increment`ed is stored with the next durable call, or within a second, and shown live
        by the API and the dashboard. Change a nested value by assigning its key again."""
        return self._scope.metadata

    def idempotency_key_for(self, name: str) -> str:
        """A key stable across attempts of this run, to pass to an external API."""
        return f"{self.run_id}:{name}"

    def patched(self, name: str) -> bool:
        """Whether this run takes the new branch of a code change named `name`, for changing a
        task's code while runs recorded by the old code are in flight:
        `if ctx.patched("fix-rounding"): <new code> else: <old code>`. True for a run that
        reaches this point for the first time; False for a run whose stored history already went
        past it without the patch (recorded by the old code), which then keeps the old branch
        and replays without a ReplayMismatch. The decision is stored with the run (a "patch"
        row), so it never changes for that run. No `await`: it is decided at once."""
        return patches.patched(self._scope, name)

    def deprecate_patch(self, name: str) -> None:
        """The last stage of a patch, once no run that took its old branch is left: keep only
        the new code and call `ctx.deprecate_patch(name)` where `ctx.patched(name)` was. Runs
        that stored the patch's decision still replay; nothing is stored for new runs, so the
        call can be removed once those runs are gone too."""
        patches.deprecate_patch(self._scope, name)

    # -- shared by both flavours of the durable waits ------------------------------------------
    def _sleep_plan(self, duration: Duration | None, when: datetime | str | None,
                    name: str) -> waits.InlineSleep | None:
        now = self._scope.clock.now()
        if when is not None:
            wake = until(when, now, "sleep_until")
        else:
            wake = now + seconds(duration if duration is not None else 0, "sleep")
        return waits.plan_sleep(self._scope, name, wake, now)

    def _create_token(self, timeout: Duration | None, idempotency_key: str | None,
                      tags: str | list[str] | None, key_ttl: Duration | None) -> Token:
        now = self._scope.clock.now()
        timeout_at = None if timeout is None else now + seconds(timeout, "timeout")
        ttl = None if key_ttl is None else seconds(key_ttl, "idempotency_key_ttl")
        record = waits.create_token(self._scope, timeout_at, idempotency_key, tag_list(tags), ttl)
        return to_token(record, now)

    def _children(self, kind: str, task: Any, items: list[tuple[Any, dict[str, Any]]]
                  ) -> tuple[list[str], Any]:
        task_id = task if isinstance(task, str) else task.id
        return waits.trigger_children(self._scope, self._scope.app, kind, task_id, items)

    def _handle(self, run_id: str) -> RunHandle[Any]:
        return RunHandle(self._scope.storage, run_id)


def _single(results: list[dict[str, Any]]) -> Any:
    result = results[0]
    if not result["ok"]:
        raise RunFailed(result["run_id"], result["status"], result["error"])
    return result["output"]


def _results(results: list[dict[str, Any]]) -> list[RunResult]:
    return [RunResult(r["ok"], r["output"], r["error"], r["run_id"]) for r in results]


class Context(_Base):
    """The run's context for an `async def` task: its second parameter, `ctx`.

    Durable calls (`step`, `once`, the sleeps, `create_token`, `wait_for_token` and the triggers)
    are stored by name and position: when the run's code runs again (a retry, a resumed wait)
    each returns its stored result, so the code must reach them in the same order each time.
    """

    async def step(self, name: str, fn: Callable[..., Any], *args: Any,
                   retry: Retry | None = None, rate_limit: str | None = None,
                   **kwargs: Any) -> Any:
        """Call `fn(*args, **kwargs)` (sync or async) once per run and store its result, a JSON
        value, which is returned; later attempts get the stored result without calling `fn`.
        At-least-once: a crash while `fn` runs means it runs again. A name used again in one run
        is keyed `name#2`, `name#3`, ... `retry` retries a failing call in place.
        `rate_limit`: the name of a limit (`app.rate_limits.set`) each call of `fn` takes one
        unit from first, waiting for it durably (a long wait parks the run); a stored result
        takes nothing. (`retry` and `rate_limit` are not passed on to `fn`.)"""
        return await self._checkpointed(name, "step", fn, args, kwargs, retry, rate_limit)

    async def acquire(self, name: str, weight: float = 1) -> None:
        """Take `weight` units (default 1; e.g. an LLM call's tokens) from the named rate limit
        `name`, shared by every worker. Returns once they are taken: at once, after a short wait
        in process (up to 2 s), or after parking the run (WAITING, no slot held) until the limit
        has them. Taken once per run: a replay returns at once. UnknownRateLimit for a name
        without a limit; ConfigurationError for a weight over the limit's burst."""
        call = acquire.Acquire(self._scope, name, weight)
        if call.done:
            return
        wait = await self._io(call.wait)
        if wait > 0:
            await asyncio.sleep(wait)
        call.taken()

    async def _io(self, fn: Callable[[], Any]) -> Any:
        """A storage call off the event loop when it is a network round trip (PostgreSQL)."""
        if self._scope.storage.io_bound and self._loop is not None:
            return await asyncio.to_thread(fn)
        return fn()

    async def _take(self, rate_limit: str) -> None:
        self._scope.check()
        wait = await self._io(lambda: acquire.take(self._scope, rate_limit, 1))
        if wait > 0:
            await asyncio.sleep(wait)

    async def once(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like `step`, but at-most-once: if an attempt died after `fn` started and before its
        result was stored, later attempts raise `OnceInterrupted` instead of calling it again."""
        return await self._checkpointed(name, "once", fn, args, kwargs, None, None)

    async def checkpoint(self, state: Any) -> None:
        """Store `state` (a JSON value) as the run's checkpoint, replacing the last one; later
        attempts and resumed runs read it back as `ctx.state`."""
        self._scope.checkpoint(state)

    async def sleep(self, duration: Duration, *, name: str = "sleep") -> None:
        """Durable sleep: the run parks (WAITING, no worker or queue slot held) and resumes on
        any worker when the time comes. Sleeps up to the app's `inline_sleep` stay in process."""
        await self._sleep(duration, None, name)

    async def sleep_until(self, when: datetime | str, *, name: str = "sleep") -> None:
        """Durable sleep until `when`, a timezone-aware datetime or ISO-8601 text with an
        offset; a time already passed returns at once."""
        await self._sleep(None, when, name)

    async def _sleep(self, duration: Duration | None, when: datetime | str | None,
                     name: str) -> None:
        try:
            inline = self._sleep_plan(duration, when, name)
        except waits.Suspend as parked:
            await gathering.hold(self._scope, parked)
        if inline is not None:
            with gathering.working(self._scope):
                await asyncio.sleep(inline.seconds)
            inline.done()

    async def create_token(self, *, timeout: Duration | None = None,
                           idempotency_key: str | None = None,
                           tags: str | list[str] | None = None,
                           idempotency_key_ttl: Duration | None = None) -> Token:
        """A token for someone to complete (`app.tokens.complete`, the CLI, the API); created
        once per run however often this code runs. `idempotency_key` returns the token made
        with it before (by any run or channel), until `idempotency_key_ttl` if given."""
        return self._create_token(timeout, idempotency_key, tags, idempotency_key_ttl)

    async def wait_for_token(self, token: Token | str) -> Any:
        """Park until the token is completed; returns its data. Raises WaitTimeout after its
        timeout."""
        try:
            return waits.wait_for_token(self._scope, token if isinstance(token, str) else token.id)
        except waits.Suspend as parked:
            await gathering.hold(self._scope, parked)

    async def trigger(self, task: Any, payload: Any = None, **options: Any) -> RunHandle[Any]:
        """Start a child run (linked to this run), once per run however often this code runs."""
        ids, _ = self._children("trigger", task, [(payload, options)])
        return self._handle(ids[0])

    async def trigger_and_wait(self, task: Any, payload: Any = None, **options: Any) -> Any:
        """Start a child run and park until it ends; its output, or RunFailed."""
        return _single(await self._waited("trigger_wait", task, [(payload, options)]))

    async def batch_trigger_and_wait(self, task: Any, items: list[Any],
                                     **options: Any) -> list[RunResult]:
        """Fan out one child run per item and park until all ended; results in item order."""
        return _results(await self._waited("batch_wait", task, batch_items(items, options)))

    async def _waited(self, kind: str, task: Any, items: list[tuple[Any, dict[str, Any]]]
                      ) -> list[dict[str, Any]]:
        try:
            results: list[dict[str, Any]] = self._children(kind, task, items)[1]
        except waits.Suspend as parked:
            await gathering.hold(self._scope, parked)
        return results

    async def _checkpointed(self, name: str, kind: str, fn: Callable[..., Any],
                            args: tuple[Any, ...], kwargs: dict[str, Any],
                            retry: Retry | None, rate_limit: str | None) -> Any:
        call = StepCall(self._scope, name, kind, retry)
        if call.done:
            return call.value
        fn = call.target(fn)
        if rate_limit is not None and not call.done:
            check_name(rate_limit)
        task = gathering.begin_work(self._scope)  # waits gathered beside it park once it ended
        try:
            while not call.done:
                if rate_limit is not None:
                    await self._take(rate_limit)
                call.begin()
                try:
                    value = fn(*args, **kwargs)
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as exc:
                    await asyncio.sleep(call.failed(exc))  # re-raises when no retry is left
                    continue
                call.completed(value)
        finally:
            gathering.end_work(self._scope, task)
        return call.value


class SyncContext(_Base):
    """The run's context for a plain `def` task, which runs in a thread: the calls of `Context`
    without `await`."""

    def step(self, name: str, fn: Callable[..., Any], *args: Any,
             retry: Retry | None = None, rate_limit: str | None = None, **kwargs: Any) -> Any:
        """[`Context.step`][tether.Context.step] without `await`. An async `fn` runs on the
        worker's event loop; a short wait for `rate_limit` blocks this task's thread."""
        return self._checkpointed(name, "step", fn, args, kwargs, retry, rate_limit)

    def acquire(self, name: str, weight: float = 1) -> None:
        """[`Context.acquire`][tether.Context.acquire] without `await`; a short wait blocks
        this task's thread."""
        call = acquire.Acquire(self._scope, name, weight)
        if call.done:
            return
        wait = call.wait()
        if wait > 0:
            time.sleep(wait)
        call.taken()

    def once(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """[`Context.once`][tether.Context.once] without `await`."""
        return self._checkpointed(name, "once", fn, args, kwargs, None, None)

    def checkpoint(self, state: Any) -> None:
        """[`Context.checkpoint`][tether.Context.checkpoint] without `await`."""
        self._scope.checkpoint(state)

    def sleep(self, duration: Duration, *, name: str = "sleep") -> None:
        """[`Context.sleep`][tether.Context.sleep] without `await`; a sleep short enough to stay
        in process blocks this task's thread."""
        inline = self._sleep_plan(duration, None, name)
        if inline is not None:
            time.sleep(inline.seconds)
            inline.done()

    def sleep_until(self, when: datetime | str, *, name: str = "sleep") -> None:
        """[`Context.sleep_until`][tether.Context.sleep_until] without `await`."""
        inline = self._sleep_plan(None, when, name)
        if inline is not None:
            time.sleep(inline.seconds)
            inline.done()

    def create_token(self, *, timeout: Duration | None = None, idempotency_key: str | None = None,
                     tags: str | list[str] | None = None,
                     idempotency_key_ttl: Duration | None = None) -> Token:
        """[`Context.create_token`][tether.Context.create_token] without `await`."""
        return self._create_token(timeout, idempotency_key, tags, idempotency_key_ttl)

    def wait_for_token(self, token: Token | str) -> Any:
        """[`Context.wait_for_token`][tether.Context.wait_for_token] without `await`."""
        return waits.wait_for_token(self._scope, token if isinstance(token, str) else token.id)

    def trigger(self, task: Any, payload: Any = None, **options: Any) -> RunHandle[Any]:
        """[`Context.trigger`][tether.Context.trigger] without `await`."""
        ids, _ = self._children("trigger", task, [(payload, options)])
        return self._handle(ids[0])

    def trigger_and_wait(self, task: Any, payload: Any = None, **options: Any) -> Any:
        """[`Context.trigger_and_wait`][tether.Context.trigger_and_wait] without `await`."""
        return _single(self._children("trigger_wait", task, [(payload, options)])[1])

    def batch_trigger_and_wait(self, task: Any, items: list[Any], **options: Any) -> list[RunResult]:
        """[`Context.batch_trigger_and_wait`][tether.Context.batch_trigger_and_wait] without
        `await`."""
        return _results(self._children("batch_wait", task, batch_items(items, options))[1])

    def parallel(self, *calls: Callable[[], Any]) -> list[Any]:
        """Wait for several things at once: `ctx.parallel(lambda: ctx.trigger_and_wait(...),
        lambda: ctx.sleep("1h"), lambda: ctx.wait_for_token(token))` calls each zero-argument
        callable in turn, in this thread, and returns their results in order. Those that wait
        for something not yet done park the run once, together; it resumes once, when all are
        done, and this call returns their results (the sync form of `asyncio.gather` of waits).
        An exception of a call (such as WaitTimeout or RunFailed) is raised once every call was
        made; the first, if several."""
        return gathering.parallel(self._scope, calls)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            if self._loop is None:
                return asyncio.run(value)  # type: ignore[arg-type]
            return asyncio.run_coroutine_threadsafe(value, self._loop).result()  # type: ignore[arg-type]
        return value

    def _checkpointed(self, name: str, kind: str, fn: Callable[..., Any],
                      args: tuple[Any, ...], kwargs: dict[str, Any], retry: Retry | None,
                      rate_limit: str | None) -> Any:
        call = StepCall(self._scope, name, kind, retry)
        fn = call.target(fn)
        if rate_limit is not None and not call.done:
            check_name(rate_limit)
        while not call.done:
            if rate_limit is not None:
                self._scope.check()
                wait = acquire.take(self._scope, rate_limit, 1)
                if wait > 0:
                    time.sleep(wait)
            call.begin()
            try:
                value = self._call(fn, args, kwargs)
            except Exception as exc:
                time.sleep(call.failed(exc))  # re-raises when no retry is left
                continue
            call.completed(value)
        return call.value
