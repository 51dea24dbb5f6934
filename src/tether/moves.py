"""`app.runs.migrate`: move runs pinned to one code version onto this app's version, after
checking that each one's stored history replays on this app's code (engine/replay.py).

A run that passes is re-pinned (its `version` set, only if nobody changed it meanwhile); one that
does not is refused with the reason and left as it was."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tether.engine.replay import OK, UNFINISHED, Replayer, RunCheck
from tether.errors import ConfigurationError, RunNotFound
from tether.models import RunStatus
from tether.storage.records import RunFilter, RunRecord
from tether.versions import check_version

if TYPE_CHECKING:
    from tether.app import Tether

PAGE = 500


@dataclass
class MigrateReport:
    """What `migrate` did: the runs moved to `version`, and the ones refused, each with why."""

    version: str
    moved: list[str] = field(default_factory=list)
    refused: list[RunCheck] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # on `version` before

    @property
    def passed(self) -> bool:
        return not self.refused

    def summary(self) -> str:
        text = f"{len(self.moved)} run(s) moved to version {self.version}"
        if self.already:
            text += f", {len(self.already)} already on it"
        return text + (f", {len(self.refused)} refused" if self.refused else "")


def _selected(app: Tether, run_ids: Iterable[str] | None, from_version: str | None,
              statuses: list[str]) -> Iterable[list[RunRecord]]:
    storage = app.storage
    if run_ids is not None:
        wanted = list(dict.fromkeys(run_ids))
        found = {r.id: r for r in storage.get_runs(wanted)}
        missing = [run_id for run_id in wanted if run_id not in found]
        if missing:
            raise RunNotFound(missing[0])
        yield [found[run_id] for run_id in wanted]
        return
    flt = RunFilter(status=statuses, limit=PAGE)
    while True:
        page = storage.list_runs(flt)
        yield [r for r in page if from_version is None or r.version == from_version]
        if len(page) < PAGE:
            return
        flt.before_id = page[-1].id


def migrate(app: Tether, run_ids: Iterable[str] | None = None, *,
            from_version: str | None = None, to_version: str | None = None,
            status: list[str] | str | None = None) -> MigrateReport:
    """See `Runs.migrate`."""
    target = check_version(to_version) if to_version is not None else app.version
    if from_version is not None:
        check_version(from_version)
    if run_ids is None and from_version is None:
        raise ConfigurationError("say which runs to move: their ids, or the version they are on "
                                 "(from_version / --version)")
    wanted = [status] if isinstance(status, str) else list(status or UNFINISHED)
    statuses = [str(RunStatus(s.upper())) for s in wanted]
    storage = app.storage
    report = MigrateReport(target)
    replayer = Replayer(app)
    try:
        for page in _selected(app, run_ids, from_version, statuses):
            steps = storage.load_steps_many([r.id for r in page])
            moves: list[tuple[str, str | None]] = []
            for record in page:
                if record.version == target:
                    report.already.append(record.id)
                    continue
                if RunStatus(record.status).is_final:
                    report.refused.append(RunCheck(record.id, record.task_id, record.status,
                                                   "refused", "the run has ended"))
                    continue
                checked = replayer.check(record, steps.get(record.id, {}))
                if checked.verdict != OK:
                    report.refused.append(checked)
                    continue
                moves.append((record.id, record.version))
            moved = set(storage.repin_runs(moves, target)) if moves else set()
            for run_id, _ in moves:
                if run_id in moved:
                    report.moved.append(run_id)
                else:
                    record = next(r for r in page if r.id == run_id)
                    report.refused.append(RunCheck(run_id, record.task_id, record.status,
                                                   "refused", "its version changed meanwhile"))
    finally:
        replayer.close()
    return report
