"""Pieces the API's route modules share: the error body, ISO dates as JavaScript writes them,
offset and comma-list parameters, and the text types that keep NUL characters out of storage."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, StringConstraints

from tether.server.errors import ApiError

T = TypeVar("T")

# Text that storage accepts on both backends (PostgreSQL rejects NUL characters).
Text = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]


class ErrorBody(BaseModel):
    error: str


# No 409: Trigger.dev's SDK retries a 409 for seconds; what cannot apply to the current state is
# a 400 with the reason.
ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Not valid JSON, or cannot apply to the current state"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "Invalid request"},
}


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, as JavaScript's `Date.toISOString()` writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def optional_iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


class OffsetPagination(BaseModel):
    currentPage: int
    totalPages: int
    count: int


def offset_page(items: list[T], page: int, per_page: int) -> tuple[list[T], OffsetPagination]:
    """One page of `items` (pages count from 1) and its pagination block."""
    start = (page - 1) * per_page
    pagination = OffsetPagination(currentPage=page, totalPages=math.ceil(len(items) / per_page),
                                  count=len(items))
    return items[start:start + per_page], pagination


# An id or name in a path: NUL characters never name anything stored.
IdPath = Annotated[str, Path(max_length=256, pattern=r"^[^\x00]*$")]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]
PerPageQuery = Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100)")]


def iso_at(ts: float | None) -> str | None:
    """Epoch seconds as `iso` writes them: 2024-05-01T12:00:00.000Z."""
    return None if ts is None else iso(datetime.fromtimestamp(ts, tz=UTC))


def comma_list(value: str | None) -> list[str] | None:
    """A `filter[...]` of comma-separated values; None when it names none."""
    items = [] if value is None else [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def named_values(value: str | None, known: Iterable[str], param: str) -> list[str] | None:
    """A comma list of names from `known` (any case, given upper-cased); 422 naming the valid
    ones for anything else."""
    names = comma_list(value)
    if names is None:
        return None
    valid = list(known)
    unknown = [n for n in names if n.upper() not in valid]
    if unknown:
        raise ApiError(422, f"unknown status(es) {unknown} in {param}; valid: {', '.join(valid)}")
    return [n.upper() for n in names]
