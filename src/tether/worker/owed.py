"""Failure hooks owed after a crash. A run whose last attempt crashed is ended FAILED by another
worker's reaper, which does not have to have the task's code; the same commit records the hook
as owed (migration 0014_owed_hooks). Every worker that serves a task with an `on_failure` hook
looks for such rows every few seconds on its event loop (never on the housekeeping thread, so a
slow hook cannot delay heartbeats), takes them for HOLD seconds, runs each hook as a normal
ending would, then deletes the row. A worker that dies meanwhile leaves the row to be taken again
once the hold is over: a hook owed runs at least once."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tether.engine.hooks import ended_scope, run_hook
from tether.errors import StorageUnavailable

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.worker")

INTERVAL = 2.0  # seconds between looks for owed hooks
HOLD = 120.0  # seconds a worker holds a hook it took before another may take it again


class OwedHooks:
    def __init__(self, app: Tether, worker_id: str, task_ids: list[str]) -> None:
        self.app = app
        self.worker_id = worker_id
        # only the tasks that have a failure hook: a worker without any never looks
        self.task_ids = [t for t in task_ids if app.tasks[t].on_failure is not None]
        self.ran = 0

    async def _io(self, fn: Any, *args: Any) -> Any:
        if self.app.storage.io_bound:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def run_forever(self, interval: float = INTERVAL) -> None:
        if not self.task_ids:
            return
        while True:
            try:
                while await self.run_once():
                    pass
            except StorageUnavailable as exc:
                log.error("cannot look for owed failure hooks: %s; trying again", exc)
            except Exception:
                log.exception("running owed failure hooks failed; trying again")
            await asyncio.sleep(interval)

    async def run_once(self, limit: int = 20) -> int:
        """Take and run up to `limit` owed hooks; returns how many were taken."""
        storage = self.app.storage
        taken: list[str] = await self._io(storage.take_owed_hooks, self.task_ids, self.worker_id,
                                          self.app.clock.now(), HOLD, limit)
        if not taken:
            return 0
        records = {r.id: r for r in await self._io(storage.get_runs, taken)}
        for run_id in taken:
            record = records.get(run_id)  # (None: the run is gone; nothing left to call)
            task = self.app.tasks.get(record.task_id) if record is not None else None
            if record is not None and task is not None:
                log.info("run %s: running the failure hook its crashed attempt left owed",
                         record.id)
                await run_hook(task, ended_scope(self.app, record), record)
                self.ran += 1
            await self._io(storage.settle_owed_hook, run_id, self.worker_id)
        return len(taken)
