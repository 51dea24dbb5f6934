"""The runs list's query (`Storage.list_runs`), built once for both dialects: each backend says
how it writes a parameter and a membership test."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether.storage.records import RunFilter

InList = Callable[[Sequence[str]], tuple[str, list[object]]]


def list_runs_sql(flt: RunFilter, mark: str, in_list: InList) -> tuple[str, list[object], bool]:
    """`SELECT * FROM runs` with the filter's conditions, newest first (or, for the runs just newer
    than an id, nearest first: the caller flips those, as the third value says), and its
    parameters. `mark` is the dialect's placeholder; `in_list(values)` the right side of a
    membership test (`= ANY (%s)`, `IN (?, ?)`) and its parameters."""
    where: list[str] = []
    params: list[object] = []
    for column, values in (("status", flt.status), ("task_id", flt.task_id), ("queue", flt.queue),
                           ("tag", flt.tag)):
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
    newer = flt.newer_than_id is not None
    sql = ("SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY id {'ASC' if newer else 'DESC'} LIMIT {mark}")
    return sql, [*params, flt.limit], newer
