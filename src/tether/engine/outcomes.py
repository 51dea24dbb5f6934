"""What a worker says about an attempt that ended badly: one log line per failed attempt (with
its next retry) and one per run that ended for good without completing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tether.engine import states
from tether.serialization import loads
from tether.storage.records import RunRecord

log = logging.getLogger("tether.worker")


def _error_text(error_json: str | None) -> str:
    error = loads(error_json) if error_json else None
    if not isinstance(error, dict):
        return "no error recorded"
    kind = str(error.get("type") or "Error").rsplit(".", 1)[-1]
    return f"{kind}: {error.get('message', '')}"


def log_outcome(record: RunRecord, attempt: int, transition: states.Transition) -> None:
    """After the commit that ended `attempt` of `record`'s run with `transition`."""
    outcome = transition.attempt_outcome
    what = f"run {record.id} (task {record.task_id}) attempt {attempt} of {record.max_attempts}"
    if outcome == "DEFERRED":  # back-pressure: told to come back later
        log.info("%s deferred: %s", what, transition.reason)
        return
    if outcome not in ("FAILED", "TIMED_OUT", "CRASHED"):
        return
    error = _error_text(transition.error)
    if record.status == states.S.QUEUED:
        when = datetime.fromtimestamp(record.available_at, UTC)
        log.warning("%s failed: %s; retrying at %s", what, error,
                    when.isoformat(timespec="seconds").replace("+00:00", "Z"))
    elif record.status in (states.S.FAILED, states.S.TIMED_OUT):
        log.error("%s %s: %s; the run ended %s (%s)", what,
                  "timed out" if outcome == "TIMED_OUT" else "failed", error, record.status,
                  transition.reason)
