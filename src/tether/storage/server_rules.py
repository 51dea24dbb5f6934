"""Rules both backends apply to the HTTP server's records inside their own transactions (kept
apart from storage/server.py, which the storage interface imports: the engine's tag rules import
storage records, and this module imports the engine)."""

from __future__ import annotations

from collections.abc import Iterable

from tether.engine.triggering import MAX_TAGS, tag_list
from tether.errors import ConfigurationError
from tether.storage.records import NewRun, RunRecord
from tether.storage.server import ApiKeyRecord


def merged_tags(existing: list[str], added: list[str]) -> list[str]:
    """A run's tags once `added` are added: sorted, without duplicates, at most MAX_TAGS."""
    merged = sorted(set(existing) | set(added))
    if len(merged) > MAX_TAGS:
        raise ConfigurationError(f"a run has at most {MAX_TAGS} tags: it has {len(existing)}, "
                                 f"adding {added} would make {len(merged)}")
    return tag_list(merged)


def ambiguous_name(name: str, named: list[ApiKeyRecord]) -> None:
    """Refuse to revoke by a name that several active keys share."""
    active = [key.id for key in named if key.revoked_at is None]
    if len(active) > 1:
        raise ConfigurationError(f"{len(active)} active API keys are named {name!r} "
                                 f"({', '.join(active)}): revoke one by its id")


def fresh_items(items: list[tuple[int, NewRun]], known: Iterable[int]) -> list[tuple[int, NewRun]]:
    """The batch items whose index has no run yet; of an index given twice, the first item."""
    fresh: dict[int, NewRun] = {}
    taken = set(known)
    for idx, new in items:
        if idx not in taken:
            fresh.setdefault(idx, new)
    return list(fresh.items())


def batch_results(items: list[tuple[int, NewRun]], runs: dict[int, tuple[RunRecord, bool]]
                  ) -> list[tuple[int, RunRecord, bool]]:
    """(index, run, created) in the order given: an index given twice created at most once."""
    out, seen = [], set()
    for idx, _ in items:
        record, created = runs[idx]
        out.append((idx, record, created and idx not in seen))
        seen.add(idx)
    return out
