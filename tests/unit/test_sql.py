"""Named queries are loaded compacted: no comments, one space for each run of white space."""

from __future__ import annotations

from tether.storage.sql import compact, load_queries


def test_compact_drops_comments_and_folds_white_space() -> None:
    sql = """-- leading comment
    SELECT a - 1,   b  -- trailing comment
    FROM t
    WHERE c = 2 -- another
    """
    assert compact(sql) == "SELECT a - 1,b FROM t WHERE c = 2"  # (no space after a comma)
    assert compact("SELECT f( a,\n  b ) FROM ( SELECT 1 )\n x") == "SELECT f(a,b) FROM (SELECT 1) x"


def test_compact_keeps_quoted_text_as_it_is() -> None:
    sql = "SELECT 'x -- not a comment','  two, spaces ','it''s',\"odd,  name\" FROM t"
    assert compact(sql) == sql


def test_every_query_is_short_enough_for_the_driver_to_cache() -> None:
    files = [(package, filename) for package in ("tether.storage.postgres", "tether.storage.sqlite")
             for filename in ("queries.sql", "server.sql", "schedules.sql")]
    for package, filename in [*files, ("tether.storage.postgres", "steps.sql")]:
        for name, sql in load_queries(package, filename).items():
            assert "--" not in sql and "\n" not in sql, name
            assert len(sql) <= 4096, (package, name, len(sql))  # psycopg's cache limit
