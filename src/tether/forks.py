"""`app.runs.fork`: a new run of the same task, payload and options as an existing run (like a
replay) that starts with a copy of that run's durable calls stored before one of them, so its
first attempt returns their stored results and executes from that call on.

Rules:
- `from_step` names a stored durable call: its key (`charge`, `charge#2`, `sleep`,
  `trigger:build`) or, failing that, its name (the first call by that name). It must have a
  position (every row since migration 0002 has one). The call itself and every later one run.
- Copied: the rows with a position below it, as stored (status, result, error, attempt, position).
  Rows without a position (the decisions of `ctx.patched` that took an old branch) are not:
  the forked run decides those again from its copied history, with the same answer.
- The copy, the new run and its FORKED event are one transaction (`Storage.create_fork`).
- Any run may be forked, whatever its status: the fork is a new run and leaves its source alone.
  Forking one still executing copies what it has stored so far.
- Not copied: the checkpoint (`ctx.state` starts empty), logs, attempts. Copied calls that made
  children or tokens keep naming them: the fork shares the source's children and tokens.
- The new run's metadata is the source's plus `tether.forked_from` (`{"run_id", "from_step"}`),
  which also tells its first claim to load the copied rows (`records.forked`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.engine.triggering import build_runs
from tether.errors import StepNotFound
from tether.handles import RunHandle
from tether.objects.references import copied, is_reference
from tether.observe.metrics import count_triggered
from tether.serialization import loads
from tether.storage.records import FORKED_FROM, Fork, RunRecord, StepRecord

if TYPE_CHECKING:
    from tether.app import Tether


def same_options(record: RunRecord) -> dict[str, Any]:
    """The trigger options a replay or a fork repeats. A fork's origin is not repeated."""
    metadata = loads(record.metadata) or {}
    if isinstance(metadata, dict):
        metadata.pop(FORKED_FROM, None)
    return {"tags": loads(record.tags), "metadata": metadata,
            "concurrency_key": record.concurrency_key or None, "priority": record.priority,
            "max_attempts": record.max_attempts, "queue": record.queue}


def fork_point(run_id: str, steps: dict[str, StepRecord], from_step: str) -> StepRecord:
    """The stored call to execute from: by key, else the first by name."""
    placed = sorted((s for s in steps.values() if s.seq is not None), key=lambda s: s.seq or 0)
    found = steps.get(from_step) or next((s for s in placed if s.name == from_step), None)
    if found is None:
        names = [s.key for s in placed]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise StepNotFound(run_id, from_step, f"its calls: {shown}" if names
                           else "it has stored none")
    if found.seq is None:
        raise StepNotFound(run_id, from_step, f"{found.key!r} was stored without a position "
                                              "(by an older Tether), so it cannot be forked")
    return found


def fork(app: Tether, record: RunRecord, from_step: str) -> RunHandle[Any]:
    storage = app.storage
    steps = storage.load_steps(record.id)
    point = fork_point(record.id, steps, from_step)
    options = same_options(record)
    options["metadata"][FORKED_FROM] = {"run_id": record.id, "from_step": point.key}
    spec, validate = app.spec_for(record.task_id)
    now = app.clock.now()
    [new] = build_runs(spec, validate, [(loads(record.payload), options)], now,
                       app.max_payload_size)
    app._ensure_queue(spec.queue, now)
    reason = (f"forked from {record.id} at {point.key!r}: the durable calls before it "
              f"(#1-#{point.seq - 1 if point.seq else 0}) keep their stored results")
    # large results of the copied calls: the fork gets copies of its own, written before it
    outputs = tuple((s.key, copied(s.output, app.objects, new.id)) for s in steps.values()
                    if s.seq is not None and s.seq < (point.seq or 0) and is_reference(s.output)
                    and s.output is not None)
    created, _ = storage.create_fork(Fork(new, record.id, point.seq or 0, reason, outputs), now)
    count_triggered([(created, True)])
    return RunHandle(storage, created.id)
