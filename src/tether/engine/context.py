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
from typing import Any

from tether.engine.scope import Metadata, RunScope, StepCall
from tether.options import Retry
from tether.serialization import loads


class _Base:
    def __init__(self, scope: RunScope, task_id: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self._scope = scope
        self._loop = loop
        self.run_id = scope.record.id
        self.task_id = task_id
        self.attempt = scope.lease.attempt
        self.tags: list[str] = loads(scope.record.tags)
        self.payload: Any = loads(scope.record.payload)
        self.logger = logging.LoggerAdapter(logging.getLogger(f"tether.run.{task_id}"),
                                            {"run_id": self.run_id})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} run={self.run_id} attempt={self.attempt}>"

    @property
    def state(self) -> Any:
        """The value of the last `checkpoint`, None before any."""
        return self._scope.state

    @property
    def metadata(self) -> Metadata:
        return self._scope.metadata

    def idempotency_key_for(self, name: str) -> str:
        """A key stable across attempts of this run, to pass to an external API."""
        return f"{self.run_id}:{name}"


class Context(_Base):
    async def step(self, name: str, fn: Callable[..., Any], *args: Any,
                   retry: Retry | None = None, **kwargs: Any) -> Any:
        """Run `fn` once per run and checkpoint its result (at-least-once)."""
        return await self._checkpointed(name, "step", fn, args, kwargs, retry)

    async def once(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like `step`, but at-most-once: never called again after a start that did not finish."""
        return await self._checkpointed(name, "once", fn, args, kwargs, None)

    async def checkpoint(self, state: Any) -> None:
        self._scope.checkpoint(state)

    async def _checkpointed(self, name: str, kind: str, fn: Callable[..., Any],
                            args: tuple[Any, ...], kwargs: dict[str, Any],
                            retry: Retry | None) -> Any:
        call = StepCall(self._scope, name, kind, retry)
        while not call.done:
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                await asyncio.sleep(call.failed(exc))  # re-raises when no retry is left
                continue
            call.completed(value)
        return call.value


class SyncContext(_Base):
    def step(self, name: str, fn: Callable[..., Any], *args: Any,
             retry: Retry | None = None, **kwargs: Any) -> Any:
        return self._checkpointed(name, "step", fn, args, kwargs, retry)

    def once(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._checkpointed(name, "once", fn, args, kwargs, None)

    def checkpoint(self, state: Any) -> None:
        self._scope.checkpoint(state)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            if self._loop is None:
                return asyncio.run(value)  # type: ignore[arg-type]
            return asyncio.run_coroutine_threadsafe(value, self._loop).result()  # type: ignore[arg-type]
        return value

    def _checkpointed(self, name: str, kind: str, fn: Callable[..., Any],
                      args: tuple[Any, ...], kwargs: dict[str, Any], retry: Retry | None) -> Any:
        call = StepCall(self._scope, name, kind, retry)
        while not call.done:
            try:
                value = self._call(fn, args, kwargs)
            except Exception as exc:
                time.sleep(call.failed(exc))  # re-raises when no retry is left
                continue
            call.completed(value)
        return call.value
