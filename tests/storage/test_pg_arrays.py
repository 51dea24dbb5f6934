"""Array literals for PostgreSQL parameters read back as the values they were made of."""

from __future__ import annotations

import math

import pytest

from backends import POSTGRES, require_postgres
from tether.storage.postgres.arrays import array_literal

TEXTS = ["plain", "", "NULL", "null", 'a "quoted" word', "back\\slash\\", "{,}", " spaced ",
         "naïve ☃ 🎉", '{"json": [1, "two"], "s": "\\"\\\\"}', "line\nbreak\ttab", None]


def test_literals_read_back_as_their_values() -> None:
    require_postgres()
    import psycopg

    floats = [1.5, -0.0, 1796602719.739, 1e-300, 1e300, math.inf, -math.inf, None]
    with psycopg.connect(POSTGRES, prepare_threshold=0) as conn:
        row = conn.execute("SELECT %s::text[], %s::float8[], %s::int[], %s::bool[], %s::text[]",
                           (array_literal(TEXTS), array_literal(floats),
                            array_literal([0, -7, 2**31 - 1, None]),
                            array_literal([True, False, None]), array_literal([]))).fetchone()
        nan = conn.execute("SELECT %s::float8[]", (array_literal([math.nan]),)).fetchone()
    assert row is not None and nan is not None
    assert row == (TEXTS, floats, [0, -7, 2**31 - 1, None], [True, False, None], [])
    assert math.isnan(nan[0][0])


def test_other_values_are_refused() -> None:
    with pytest.raises(TypeError):
        array_literal([b"bytes"])
