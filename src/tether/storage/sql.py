"""Named SQL queries kept in .sql files: `-- name: some_query` starts a query, the next one ends it."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str) -> dict[str, str]:
    """Each query compacted: drivers cache the parsing of short query texts only (psycopg up
    to 4,096 characters), and comments would push the longest ones past that."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = compact(body).rstrip(";")
    return queries


_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\s+|[^'\"\s-]+|-")


def compact(sql: str) -> str:
    """The statement without its `--` comments, each run of white space made one space, and
    none after a comma or an opening parenthesis nor before a closing one, outside quotes
    (`f( a, b )` -> `f(a,b)`: the longest statements list many columns); quoted strings and
    identifiers are kept as they are."""
    out: list[str] = []
    for token in _TOKEN.findall(sql):
        if token.startswith("--") or token.isspace():
            token = " "
        if token == " " and (not out or out[-1] == " " or out[-1].endswith((",", "("))):
            continue
        if token.startswith(")") and out and out[-1] == " ":
            out.pop()
        out.append(token)
    return "".join(out).strip()


def migration_files(package: str) -> list[tuple[str, str]]:
    """(name, sql) of every numbered migration in a package folder, in order."""
    folder = resources.files(package)
    names = sorted(p.name for p in folder.iterdir() if re.match(r"^\d{4}_\w+\.sql$", p.name))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text(encoding="utf-8"))
            for name in names]
