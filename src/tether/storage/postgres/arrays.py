"""Array parameters as PostgreSQL array literals: one text value per array, cast by the
statement (`%(run_id)s::text[]`). psycopg's own list dumping inspects and dumps each element in
Python; for the dozens of arrays of finish_runs that was a fifth of a worker's CPU per run."""

from __future__ import annotations

import math
from collections.abc import Iterable

_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return _SPECIAL.get(value, "NaN")
    raise TypeError(f"no array literal for {type(value).__name__}")


def array_literal(values: Iterable[object]) -> str:
    """`values` (str, int, float, bool or None each) as an array literal such as
    {"a",NULL,"b \\"c\\""}: every string quoted, so "NULL" or "" stay strings."""
    return "{" + ",".join(map(_element, values)) + "}"
