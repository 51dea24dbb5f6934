"""Patches: changing a task's code while runs recorded by the old code are still in flight.

`ctx.patched("fix-rounding")` is True for a run that reaches that point for the first time on code
that has the patch, and False for a run whose stored history already went past it without the
patch (recorded by older code): that run keeps the old branch, so its stored calls still match.

How the decision is made and kept, with the positions of `RunScope.locate` (a pass has reached
`scope.position` durable calls; the marker would be call `position + 1`):

- a row of kind "patch" with the patch's key (`patch:<name>`) is stored: its decision stands.
  A True row was stored at a position, which the pass consumes (`locate`: the calls after it
  keep theirs, and a marker moved elsewhere in the code is a ReplayMismatch). A False row has
  no position.
- no row, and the run has stored calls beyond this point (a stored position greater than
  `position`, or an unreached row from before positions were stored): older code went past
  here without the marker. False, stored without a position; no position is consumed, so the
  stored calls that follow keep theirs.
- no row and nothing stored beyond: True, stored at position `position + 1`.

Within one pass the first decision is kept: calling `patched` again with the same name (in a
loop, in two places) returns it without touching positions or rows.

`ctx.deprecate_patch(name)` is for when no run that took the old branch is left: the code keeps
only the new branch; a True marker stored at this point is consumed (runs that stored it still
replay), nothing is stored otherwise, and a run that stored False (it took the old branch, which
the code no longer has) fails with ReplayMismatch.
"""

from __future__ import annotations

import json

from tether.engine.scope import COMPLETED, RunScope
from tether.errors import ConfigurationError, ReplayMismatch
from tether.serialization import loads
from tether.storage.records import StepRecord

PATCH = "patch"  # the kind of a patch marker's row


def patch_key(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError("a patch needs a non-empty name (a str)")
    return f"{PATCH}:{name}"


def _went_past(scope: RunScope) -> bool:
    """Whether the run's stored history holds calls this pass has not reached yet."""
    if scope.replay_until > scope.position:
        return True
    return any(row.seq is None and row.kind != PATCH and key not in scope.seqs
               for key, row in scope.steps.items())


def _store(scope: RunScope, key: str, name: str, decision: bool) -> None:
    now = scope.clock.now()
    row = scope.row(key, name, PATCH, COMPLETED, json.dumps(decision), None, now, now)
    scope.save(row)


def _stored(scope: RunScope, key: str) -> StepRecord | None:
    row = scope.steps.get(key)
    return row if row is not None and row.kind == PATCH else None


def patched(scope: RunScope, name: str) -> bool:
    """The decision for patch `name` in this run (see the module's docstring)."""
    key = patch_key(name)
    if key in scope.patches:
        return scope.patches[key]
    scope.check()
    row = _stored(scope, key)
    if row is not None:
        decision = bool(loads(row.output))
        if row.seq is not None:
            scope.locate(key)  # consumes its position; raises if the marker moved
    elif _went_past(scope):
        decision = False
        _store(scope, key, name, False)  # no position: the stored calls keep theirs
    else:
        decision = True
        scope.locate(key)
        _store(scope, key, name, True)
    scope.patches[key] = decision
    return decision


def deprecate_patch(scope: RunScope, name: str) -> None:
    """Consume patch `name`'s stored True marker at this point, if any; store nothing."""
    key = patch_key(name)
    if key in scope.patches:
        return
    scope.check()
    row = _stored(scope, key)
    if row is not None and not loads(row.output):
        raise ReplayMismatch(key, f"the run took the old branch of patch {name!r}, which "
                                  f"the code no longer has (deprecate_patch)")
    if row is not None and row.seq is not None:
        scope.locate(key)
    scope.patches[key] = True
