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
_PARTIAL = (
    (frozenset({"DELAYED", "WAITING", "COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "EXPIRED"}),
     _BY_ID),
    (frozenset({"QUEUED", "DELAYED"}), "status IN ('QUEUED', 'DELAYED')"),  # runs_ready
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
# in two parts: those runs through the task's or queue's index, newest first, and the runs still
# in line (QUEUED, DELAYED) through runs_keys (on SQLite it ends with the task: the ids are
# found and sorted without reading a row), the backlog's size, never the history's; then the
# newest of both. A list narrowed by a tag, parent, batch or wait too is one statement: that
# filter's index finds its runs.
_LINE = frozenset({"QUEUED", "DELAYED"})
_IN_LINE = "status IN ('QUEUED', 'DELAYED')"  # runs_ready, runs_keys
_OUT_OF_LINE = "status NOT IN ('QUEUED', 'DELAYED')"  # runs_task, runs_queue (0026)


def list_runs_sql(flt: RunFilter, mark: str, in_list: InList) -> tuple[str, list[object], bool]:
    """`SELECT * FROM runs` with the filter's conditions, newest first (or, for the runs just newer
    than an id, nearest first: the caller flips those, as the third value says), and its
    parameters. `mark` is the dialect's placeholder; `in_list(values)` the right side of a
    membership test (`= ANY (%s)`, `IN (?, ?)`) and its parameters."""
    where, params = _filters(flt, mark, in_list)
    newer = flt.newer_than_id is not None
    way = "ASC" if newer else "DESC"
    narrowed = any((flt.tag, flt.parent_id, flt.batch_id, flt.waiting_for))
    term = _status_term(flt.status) if flt.status else None
    parts: list[tuple[str, list[object]]] = []
    if not narrowed and (flt.task_id or flt.queue):
        # the runs out of line walked per task (or queue): an index in id order serves one value
        outs = ([replace(flt, task_id=[v]) for v in dict.fromkeys(flt.task_id)] if flt.task_id
                else [replace(flt, queue=[v]) for v in dict.fromkeys(flt.queue or [])])
        parts = [part for one in outs for part in _line_parts(one, *_filters(one, mark, in_list),
                                                               mark, way, in_list, False)]
        parts += _line_parts(flt, where, params, mark, way, in_list, True)
    elif not narrowed and flt.status and term is None:
        parts = _index_parts(flt, where, params, mark, way, in_list)
    if len(parts) == 1:
        return parts[0][0], parts[0][1], newer
    if parts:
        sql = " UNION ALL ".join(f"SELECT * FROM ({part}) AS part{i}"
                                 for i, (part, _) in enumerate(parts))
        merged = [value for _, part_params in parts for value in part_params]
        return f"{sql} ORDER BY id {way} LIMIT {mark}", [*merged, flt.limit], newer
    status_where: list[str] = [term] if term is not None else []
    status_params: list[object] = []
    if flt.status:
        test, values = in_list(flt.status)
        status_where.append(f"status {test}")
        status_params += values
    # SQLite: `+id` keeps the primary key from ordering the list, so the partial index is read,
    # unless another filter has an index in id order (a tag's, a parent's runs...): sorting all
    # of those would cost their whole history, walking them newest first does not
    partial = term not in (None, _BY_ID)
    by_id = narrowed or bool(flt.task_id or flt.queue)
    order = "+id" if mark == "?" and partial and not by_id else "id"
    clauses = [*status_where, *(_sorted(where, mark) if order == "+id" else where)]
    sql = ("SELECT * FROM runs" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
           + f" ORDER BY {order} {way} LIMIT {mark}")
    return sql, [*status_params, *params, flt.limit], newer


def _index_parts(flt: RunFilter, where: list[str], params: list[object], mark: str, way: str,
                 in_list: InList) -> list[tuple[str, list[object]]]:
    """Statuses that no one partial index holds all of (say, the unfinished ones, or QUEUED and
    FAILED): one statement per index, each with its statuses and the list's LIMIT (finished
    runs walked newest first in runs_status, the others sorted: SQLite's `+id`), merged by
    the caller; never every run, nor every finished one."""
    parts: list[tuple[str, list[object]]] = []
    left = list(dict.fromkeys(flt.status or []))
    for holds, condition in _PARTIAL:
        mine = [status for status in left if status in holds]
        if not mine:
            continue
        left = [status for status in left if status not in holds]
        test, values = in_list(mine)
        order = "+id" if mark == "?" and condition != _BY_ID else "id"
        found = [condition, f"status {test}", *(_sorted(where, mark) if order == "+id" else where)]
        parts.append((f"SELECT * FROM runs WHERE {' AND '.join(found)}"
                      f" ORDER BY {order} {way} LIMIT {mark}", [*values, *params, flt.limit]))
    return parts


def _sorted(where: list[str], mark: str) -> list[str]:
    """The conditions for a read that SQLite sorts (`ORDER BY +id`): the cursor's comparison on
    `+id` too, or SQLite would walk the primary key's range below (above) the cursor, every run
    older than it, instead of the partial index the read is for."""
    return [f"+{c}" if c in (f"id < {mark}", f"id > {mark}") else c for c in where]


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


def _line_parts(flt: RunFilter, where: list[str], params: list[object], mark: str, way: str,
                in_list: InList, in_line: bool) -> list[tuple[str, list[object]]]:
    """A list by task or queue: its runs out of line (through runs_task or runs_queue, newest
    first) or in line (`in_line`: through runs_keys; on SQLite their ids first, sorted, then
    those rows), as a statement in the list's order with its LIMIT, and its parameters; none
    when the list's statuses are all on the other side."""
    statuses = [s for s in flt.status if (s in _LINE) == in_line] if flt.status else None
    if statuses == []:
        return []
    sorted_here = in_line and mark == "?"
    clauses = [_IN_LINE if in_line else _OUT_OF_LINE,
               *(_sorted(where, mark) if sorted_here else where)]
    values = list(params)
    if statuses:
        test, status_values = in_list(statuses)
        clauses.append(f"status {test}")
        values += status_values
    found = " AND ".join(clauses)
    if sorted_here:
        sql = (f"SELECT * FROM runs WHERE id IN (SELECT id FROM runs WHERE {found}"
               f" ORDER BY +id {way} LIMIT ?) ORDER BY id {way}")
    else:
        sql = f"SELECT * FROM runs WHERE {found} ORDER BY id {way} LIMIT {mark}"
    return [(sql, [*values, flt.limit])]
