"""The runs list's query (`Storage.list_runs`), built once for both dialects: each backend says
how it writes a parameter and a membership test."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from tether.storage.records import RunFilter

InList = Callable[[Sequence[str]], tuple[str, list[object]]]

# The partial indexes that hold every run of some statuses (migrations 0001, 0002, 0025), with
# their conditions as written there: SQLite uses a partial index only for a query that repeats
# its condition word for word, so a status filter whose statuses all fall under one of them
# gets that condition added (PostgreSQL proves it by itself; the repetition changes nothing).
# runs_status holds them by status and id, in the list's order; runs_ready and runs_executing
# (the runs waiting to start, the running ones) in another, and SQLite sorts what they give
# instead of walking every run newest first to find them (it keeps no statistics to choose by).
_BY_ID = "status NOT IN ('QUEUED', 'EXECUTING')"  # runs_status: all but the two hurried statuses
_LINE = frozenset({"QUEUED", "DELAYED"})  # the runs in line, not started
_IN_LINE = "status IN ('QUEUED', 'DELAYED')"  # runs_ready, runs_keys
_OUT_OF_LINE = "status NOT IN ('QUEUED', 'DELAYED')"  # runs_task, runs_queue (0026)
_PARTIAL = (
    (frozenset({"DELAYED", "WAITING", "COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "EXPIRED"}),
     _BY_ID),
    (_LINE, _IN_LINE),  # runs_ready
    (frozenset({"EXECUTING"}), "status = 'EXECUTING'"),  # runs_executing
)


def _status_term(statuses: Sequence[str]) -> str | None:
    """The condition of a partial index holding every run of `statuses`, if one does."""
    wanted = set(statuses)
    for holds, condition in _PARTIAL:
        if wanted <= holds:
            return condition
    return None


# Since migration 0026 the task's and the queue's indexes (runs_task, runs_queue) hold only the
# runs that left the line: a trigger writes neither, the claim enters the run (one leaf page for
# a batch of claims, where each trigger cost one). A list by task or by queue is therefore read
# in parts: those runs through the task's or queue's index, newest first (one part per task or
# queue: an index in id order serves one value), and the runs still in line through runs_keys
# (on SQLite it ends with the task: the ids are found and sorted without reading a row), the
# backlog's size, never the history's; then the newest of all parts. A list narrowed by a tag,
# parent, batch or wait too is one statement: that filter's index finds its runs.


def list_runs_sql(flt: RunFilter, mark: str, in_list: InList) -> tuple[str, list[object], bool]:
    """`SELECT * FROM runs` with the filter's conditions, newest first (or, for the runs just newer
    than an id, nearest first: the caller flips those, as the third value says), and its
    parameters. `mark` is the dialect's placeholder; `in_list(values)` the right side of a
    membership test (`= ANY (%s)`, `IN (?, ?)`) and its parameters."""
    newer = flt.newer_than_id is not None
    way = "ASC" if newer else "DESC"
    sqlite = mark == "?"
    narrowed = any((flt.tag, flt.parent_id, flt.batch_id, flt.waiting_for))
    term = _status_term(flt.status) if flt.status else None

    def select(condition: str | None, statuses: Sequence[str] | None, one: RunFilter = flt,
               sort: bool = False, ids_first: bool = False) -> tuple[str, list[object]]:
        return _select(one, mark, way, in_list, condition, statuses, sort, ids_first)

    parts: list[tuple[str, list[object]]] = []
    if not narrowed and (flt.task_id or flt.queue):
        out = [s for s in flt.status if s not in _LINE] if flt.status else None
        if out != []:
            each = ([replace(flt, task_id=[v]) for v in dict.fromkeys(flt.task_id)] if flt.task_id
                    else [replace(flt, queue=[v]) for v in dict.fromkeys(flt.queue or [])])
            parts += [select(_OUT_OF_LINE, out, one) for one in each]
        in_line = [s for s in flt.status if s in _LINE] if flt.status else None
        if in_line != []:
            parts.append(select(_IN_LINE, in_line, sort=sqlite, ids_first=sqlite))
    elif not narrowed and flt.status and term is None:
        # statuses that no one partial index holds all of (the unfinished ones, QUEUED and
        # FAILED): one part per index, never every run nor every finished one
        left = list(dict.fromkeys(flt.status))
        for holds, condition in _PARTIAL:
            mine = [status for status in left if status in holds]
            if mine:
                left = [status for status in left if status not in holds]
                parts.append(select(condition, mine, sort=sqlite and condition != _BY_ID))
    else:
        # SQLite: `+id` keeps the primary key from ordering the list, so the partial index is
        # read, unless another filter has an index in id order (a tag's, a parent's runs...):
        # sorting all of those would cost their whole history, walking them newest first not
        return (*select(term, flt.status, sort=sqlite and term not in (None, _BY_ID)
                        and not narrowed), newer)
    if len(parts) == 1:
        return (*parts[0], newer)
    sql = " UNION ALL ".join(f"SELECT * FROM ({part}) AS part{i}"
                             for i, (part, _) in enumerate(parts))
    merged = [value for _, part_params in parts for value in part_params]
    return f"{sql} ORDER BY id {way} LIMIT {mark}", [*merged, flt.limit], newer


def _select(flt: RunFilter, mark: str, way: str, in_list: InList, condition: str | None,
            statuses: Sequence[str] | None, sort: bool, ids_first: bool
            ) -> tuple[str, list[object]]:
    """One statement of the list: `condition` (a partial index's), `statuses`, the filter's other
    conditions, in the list's order, with its LIMIT. `sort`: SQLite sorts what the partial index
    gives (`+id`; the cursor compared on `+id` too, or SQLite would walk the primary key's range
    past it, every run older than it); `ids_first`: the ids found and sorted in the index alone,
    then only their rows read."""
    where, params = _filters(flt, mark, in_list)
    clauses = [condition] if condition is not None else []
    values: list[object] = []
    if statuses:
        test, status_values = in_list(statuses)
        clauses.append(f"status {test}")
        values += status_values
    clauses += [f"+{c}" if sort and c in (f"id < {mark}", f"id > {mark}") else c for c in where]
    found = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    if ids_first:
        return (f"SELECT * FROM runs WHERE id IN (SELECT id FROM runs{found} ORDER BY +id {way}"
                f" LIMIT {mark}) ORDER BY id {way}", [*values, *params, flt.limit])
    return (f"SELECT * FROM runs{found} ORDER BY {'+id' if sort else 'id'} {way} LIMIT {mark}",
            [*values, *params, flt.limit])


def _filters(flt: RunFilter, mark: str, in_list: InList) -> tuple[list[str], list[object]]:
    """The filter's conditions but its statuses, and their parameters."""
    where: list[str] = []
    params: list[object] = []
    for column, values in (("task_id", flt.task_id), ("queue", flt.queue), ("tag", flt.tag)):
        if values:
            test, values_params = in_list(values)
            where.append(f"id IN (SELECT run_id FROM run_tags WHERE tag {test})"
                         if column == "tag" else f"{column} {test}")
            params += values_params
    for clause, value in (("created_at >= ?", flt.created_after),
                          ("created_at < ?", flt.created_before), ("id < ?", flt.before_id),
                          ("parent_id = ?", flt.parent_id), ("id > ?", flt.newer_than_id),
                          ("waiting_for = ?", flt.waiting_for),
                          ("id IN (SELECT run_id FROM batch_items WHERE batch_id = ?)",
                           flt.batch_id)):
        if value is not None:
            where.append(clause.replace("?", mark))
            params.append(value)
    return where, params
