"""Which finished runs a purge deletes (PurgeRule), decided the same way on both backends.

A purge walks the runs table in id order (ids are time-ordered: a run created before a cutoff
sorts below `id_floor("run", cutoff)`, and a run cannot finish before it was created), a few
thousand rows at a time, and deletes those that match the rule; long-running runs created
before the cutoff but finished after it are skipped and seen again by a later walk."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "EXPIRED"})
CURSOR_SETTING = "retention.cursor"  # the workers' walk: {"after": id, "pass_at": time}
# how a stored value that lives in the object store starts (objects/references.py's REFERENCE):
# the purge returns such values of the rows it deleted, for their objects to be deleted too
REFERENCE_LIKE = '{"$tether_object":%'
SCAN_ROWS = 1000  # rows of the runs table one transaction looks at (at most)


class Candidate(NamedTuple):
    """A row the walk looked at (the columns the rule and the deletion need)."""
    id: str
    task_id: str
    status: str
    finished_at: float | None
    parent_id: str | None
    created_at: float
    tags: str  # the JSON list stored on the run (run_tags rows are deleted by (tag, run_id))


@dataclass(frozen=True)
class PurgeRule:
    """Finished runs of `statuses` (and of `tasks` only, when given) that finished before their
    task's cutoff: `task_before[task]` when the task has one (None there: kept forever), else
    `before` (None: kept forever)."""

    before: float | None
    task_before: Mapping[str, float | None] = field(default_factory=dict)
    statuses: frozenset[str] = FINISHED
    tasks: frozenset[str] | None = None

    def cutoff(self, task_id: str) -> float | None:
        if self.tasks is not None and task_id not in self.tasks:
            return None
        if task_id in self.task_before:
            return self.task_before[task_id]
        return self.before

    def horizon(self) -> float | None:
        """The latest cutoff: no run created after it can match."""
        cutoffs = [c for c in (self.before, *self.task_before.values()) if c is not None]
        return max(cutoffs) if cutoffs else None

    def matches(self, row: Candidate) -> bool:
        if row.status not in FINISHED or row.status not in self.statuses:
            return False
        cutoff = self.cutoff(row.task_id)
        return cutoff is not None and row.finished_at is not None and row.finished_at < cutoff

    def select(self, rows: Iterable[Candidate]) -> list[Candidate]:
        return [row for row in rows if self.matches(row)]


@dataclass
class PurgeBatch:
    """One transaction's work: the runs deleted (on a dry run, those that would be) and where
    the walk goes on (None: it reached the end)."""

    runs: list[Candidate]
    next_after: str | None
    references: list[str] = field(default_factory=list)  # object references the rows held

    @property
    def run_ids(self) -> list[str]:
        return [row.id for row in self.runs]


def without_children_of(rows: list[Candidate], unfinished_parents: set[str]) -> list[Candidate]:
    """The rows left once the children of unfinished parents are taken out (a parent that has
    not finished may still read its children)."""
    return [row for row in rows if row.parent_id is None or row.parent_id not in unfinished_parents]


def tag_pairs(rows: list[Candidate]) -> list[tuple[str, str]]:
    """The (tag, run_id) keys of the runs' run_tags rows (the tags of all the runs parsed as
    one JSON document: one call, not one per run)."""
    tagged = [row for row in rows if row.tags and row.tags != "[]"]
    if not tagged:
        return []
    lists = json.loads("[" + ",".join(row.tags for row in tagged) + "]")
    return [(tag, row.id) for row, tags in zip(tagged, lists, strict=True) for tag in tags]


def cursor_text(after: str, pass_at: float) -> str:
    return json.dumps({"after": after, "pass_at": pass_at})


def read_cursor(text: str | None) -> tuple[str, float]:
    """The workers' walk: the id it goes on after ("" : a new pass) and when a new pass may
    start."""
    if not text:
        return "", 0.0
    value = json.loads(text)
    return str(value.get("after", "")), float(value.get("pass_at", 0.0))
