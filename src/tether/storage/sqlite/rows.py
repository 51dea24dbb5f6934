"""Rows of the runs table as RunRecords, fast. The hot paths (claims, ends of attempts, reading
results) turn many rows into records; looking each of 36 columns up by name costs more than
the statement that read them. Here the columns are located once per statement (from its cursor's
description) and every row is then unpacked by position."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from tether.storage.records import RUN_COLUMNS, RunRecord

_PICKERS: dict[str, Callable[[Any], tuple[Any, ...]]] = {}


def _picker(sql: str, cursor: sqlite3.Cursor) -> Callable[[Any], tuple[Any, ...]]:
    picker = _PICKERS.get(sql)
    if picker is None:
        names = [d[0] for d in cursor.description]
        picker = _PICKERS[sql] = itemgetter(*(names.index(c) for c in RUN_COLUMNS))
    return picker


def run_records(sql: str, cursor: sqlite3.Cursor, rows: Iterable[Any]) -> list[RunRecord]:
    """`rows` that `cursor` returned for `sql` (each with every column of the runs table)."""
    pick = _picker(sql, cursor)
    return [RunRecord(*pick(row)) for row in rows]


def run_record(sql: str, cursor: sqlite3.Cursor, row: Any) -> RunRecord:
    return RunRecord(*_picker(sql, cursor)(row))
