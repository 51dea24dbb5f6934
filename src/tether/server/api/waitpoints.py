"""Waitpoint tokens over HTTP (Trigger.dev's `wait.createToken`, `completeToken`, `retrieveToken`,
`listTokens`), on `app.tokens`.

Each token has a callback `url`: `POST`ing JSON to it completes the token with that JSON as its
data, without an API key. The URL carries an HMAC of the token id (server/signing.py), so only
someone who was given the URL can complete the token; a wrong signature is a 401 that touches
nothing. A completed token's `output` is its data as JSON text (`outputType` application/json),
which is what the SDK's `wait.retrieveToken` decodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from tether.app import Tether
from tether.durations import seconds, until
from tether.engine.triggering import tag_list
from tether.engine.waits import new_token
from tether.errors import ConfigurationError
from tether.models import Token, TokenStatus
from tether.serialization import dumps
from tether.server import signing
from tether.server.api.common import (
    ERRORS,
    ErrorBody,
    IdPath,
    Text,
    comma_list,
    iso,
    named_values,
    optional_iso,
)
from tether.server.api.replies import ReplyDep
from tether.server.deps import TetherDep, api_key
from tether.server.errors import ApiError
from tether.tokens import to_token

PURPOSE = "token"
MAX_TIMEOUT = 100 * 365 * 86400.0  # a timeout further away than this is a mistake
SCAN_BATCH = 100  # tokens read per storage call while filtering a page
SCAN_LIMIT = 20  # storage calls per page at most; the page's `next` resumes where it stopped


# -- shapes ---------------------------------------------------------------------------------------
class CreateTokenBody(BaseModel):
    idempotencyKey: Text | None = Field(
        default=None, description="Creating again with the same key returns the same token")
    idempotencyKeyTTL: Text | None = Field(
        default=None, description='How long the key finds this token ("1h"); without: for ever')
    timeout: Text | None = Field(
        default=None, description='A duration ("30s", "1h", "7d") or an ISO-8601 date with a timezone')
    tags: Text | list[Text] | None = Field(default=None, description="At most 10, of 1 to 128 characters")


class CreatedToken(BaseModel):
    id: str
    isCached: bool
    url: str = Field(description="POST JSON here to complete the token; no API key needed")


class CompleteTokenBody(BaseModel):
    data: Any = None


class Success(BaseModel):
    success: Literal[True] = True


class TokenItem(BaseModel):
    id: str
    url: str
    status: TokenStatus
    completedAt: str | None = Field(default=None, description="When it was completed with data")
    timeoutAt: str | None = None
    idempotencyKey: str | None = None
    tags: list[str]
    createdAt: str


class TokenDetail(TokenItem):
    output: str | None = Field(default=None, description="The completion data as JSON text")
    outputType: Literal["application/json"] | None = None


class CursorPagination(BaseModel):
    next: str | None = None
    previous: str | None = None


class TokenList(BaseModel):
    data: list[TokenItem]
    pagination: CursorPagination


# -- helpers --------------------------------------------------------------------------------------
def callback_url(request: Request, tether: Tether, token_id: str) -> str:
    base = str(request.app.state.config.public_url).rstrip("/")
    signature = signing.sign(tether, PURPOSE, token_id)
    return f"{base}/api/v1/waitpoints/tokens/{token_id}/callback/{signature}"


def check_callback(tether: Tether, token_id: str, signature: str) -> None:
    """401 unless `signature` is the one in `token_id`'s callback URL (the request guard calls
    this before the body is read; the route again)."""
    if not signing.verify(tether, PURPOSE, token_id, signature):
        raise ApiError(401, "Invalid signature: use the token's url exactly as it was returned")


def to_item(token: Token, url: str) -> TokenItem:
    completed = token.completed_at if token.status == TokenStatus.COMPLETED else None
    return TokenItem(id=token.id, url=url, status=token.status, completedAt=optional_iso(completed),
                     timeoutAt=optional_iso(token.timeout_at), idempotencyKey=token.idempotency_key,
                     tags=token.tags, createdAt=iso(token.created_at))


def to_detail(token: Token, url: str) -> TokenDetail:
    item = to_item(token, url)
    if token.status != TokenStatus.COMPLETED:
        return TokenDetail(**item.model_dump())
    return TokenDetail(**item.model_dump(), output=dumps(token.output, "token output"),
                       outputType="application/json")


def timeout_at(timeout: str | None, now: float) -> float | None:
    if timeout is None:
        return None
    at = until(timeout, now, "timeout")
    if at - now > MAX_TIMEOUT:
        raise ConfigurationError(f"timeout must be less than 100 years away, got {timeout!r}")
    return at


# -- listing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenFilter:
    statuses: frozenset[str] | None = None
    idempotency_key: str | None = None
    tags: frozenset[str] | None = None  # any of them
    created_from: float | None = None
    created_to: float | None = None

    def stored_statuses(self) -> list[str] | None:
        """What to ask storage for: a WAITING row past its timeout is reported TIMED_OUT."""
        if self.statuses is None:
            return None
        wanted = set(self.statuses)
        if TokenStatus.TIMED_OUT in wanted:
            wanted.add(TokenStatus.WAITING)
        return sorted(wanted)

    def matches(self, token: Token) -> bool:
        created = token.created_at.timestamp()
        return ((self.statuses is None or token.status in self.statuses)
                and (self.idempotency_key is None or token.idempotency_key == self.idempotency_key)
                and (self.tags is None or not self.tags.isdisjoint(token.tags))
                and (self.created_from is None or created >= self.created_from)
                and (self.created_to is None or created <= self.created_to))


@dataclass
class Scan:
    """Matching tokens found from a cursor, in the order scanned; `resume` is where a scan that
    read SCAN_LIMIT batches without finding enough stopped (None: it reached the end)."""

    found: list[Token]
    resume: str | None


def _scan(tether: Tether, flt: TokenFilter, cursor: str | None, newer: bool, want: int) -> Scan:
    """Up to `want` tokens matching `flt`, going from `cursor` to older tokens (newest first) or,
    with `newer`, to newer ones (oldest first)."""
    found: list[Token] = []
    now = tether.clock.now()
    for _ in range(SCAN_LIMIT):
        older_than, newer_than = (None, cursor) if newer else (cursor, None)
        batch = tether.storage.list_tokens(flt.stored_statuses(), SCAN_BATCH, older_than,
                                           newer_than)
        for token in (to_token(record, now) for record in batch):
            if flt.matches(token):
                found.append(token)
                if len(found) == want:
                    return Scan(found, None)
        if len(batch) < SCAN_BATCH:
            return Scan(found, None)
        cursor = batch[-1].id
    return Scan(found, cursor)


def _beyond(tether: Tether, flt: TokenFilter, cursor: str, newer: bool) -> bool:
    """Whether a matching token lies beyond `cursor` (assumed when the scan ran out first)."""
    scan = _scan(tether, flt, cursor, newer, 1)
    return bool(scan.found) or scan.resume is not None


def token_page(tether: Tether, flt: TokenFilter, size: int, after: str | None,
               before: str | None = None) -> tuple[list[Token], CursorPagination]:
    """One page of matching tokens, newest first: older than `after`, or the `size` newer than
    `before` nearest to it (`before` wins when both are given, as for runs). A scan reads at
    most SCAN_LIMIT batches: a rare filter may give a short page whose cursor resumes it."""
    if before is not None:
        scan = _scan(tether, flt, before, True, size + 1)
        data = scan.found[:size][::-1]
        more = len(scan.found) > size
        previous = data[0].id if data and more else scan.resume
        older = bool(data) and _beyond(tether, flt, data[-1].id, False)
        return data, CursorPagination(next=data[-1].id if older else None, previous=previous)
    scan = _scan(tether, flt, after, False, size + 1)
    data = scan.found[:size]
    following = data[-1].id if data and len(scan.found) > size else scan.resume
    newer = after is not None and bool(data) and _beyond(tether, flt, data[0].id, True)
    return data, CursorPagination(next=following, previous=data[0].id if newer else None)


def _statuses(value: str | None) -> frozenset[str] | None:
    given = named_values(value, (s.value for s in TokenStatus), "filter[status]")
    return None if given is None else frozenset(given)


def _created_range(period: str | None, start_ms: int | None, end_ms: int | None,
                   now: float) -> tuple[float | None, float | None]:
    start = None if start_ms is None else start_ms / 1000
    if period is not None:
        start = max(start or 0.0, now - seconds(period, "filter[createdAt][period]"))
    return start, None if end_ms is None else end_ms / 1000


# -- routes ---------------------------------------------------------------------------------------
router = APIRouter(prefix="/api/v1/waitpoints", tags=["waitpoints"],
                   dependencies=[Depends(api_key)], responses=ERRORS)
# The callback authenticates itself with the signature in its path: no API key.
callback_router = APIRouter(prefix="/api/v1/waitpoints", tags=["waitpoints"],
                            responses={k: v for k, v in ERRORS.items() if k != 401})


def new_api_token(request: Request, tether: Tether, body: CreateTokenBody) -> CreatedToken:
    key_ttl = None
    if body.idempotencyKeyTTL is not None:
        key_ttl = seconds(body.idempotencyKeyTTL, "idempotencyKeyTTL")
    now = tether.clock.now()
    record = new_token(None, now, timeout_at(body.timeout, now), body.idempotencyKey,
                       tag_list(body.tags), key_ttl)
    # storage directly: app.tokens.create does not say whether the key found an existing token
    stored, created = tether.storage.create_token(record)
    return CreatedToken(id=stored.id, isCached=not created,
                        url=callback_url(request, tether, stored.id))


@router.post("/tokens", summary="Create a token that runs can wait for",
             response_model=CreatedToken)
def create_token(request: Request, tether: TetherDep, reply: ReplyDep,
                 body: CreateTokenBody | None = None) -> Response:
    """A request sent again with the same `x-trigger-request-idempotency-key` (the SDK's own
    retry) gets the first answer: one token."""
    return reply.answer(lambda: new_api_token(request, tether, body or CreateTokenBody()))


@router.get("/tokens", summary="List tokens, newest first", response_model_exclude_none=True)
def list_tokens(
    request: Request, tether: TetherDep,
    size: Annotated[int, Query(alias="page[size]", ge=1, le=100)] = 25,
    after: Annotated[str | None, Query(alias="page[after]", max_length=256,
                                       pattern=r"^[^\x00]*$")] = None,
    before: Annotated[str | None, Query(alias="page[before]", max_length=256,
                                        pattern=r"^[^\x00]*$")] = None,
    status: Annotated[str | None, Query(alias="filter[status]")] = None,
    idempotency_key: Annotated[str | None, Query(alias="filter[idempotencyKey]")] = None,
    tags: Annotated[str | None, Query(alias="filter[tags]")] = None,
    period: Annotated[str | None, Query(alias="filter[createdAt][period]")] = None,
    created_from: Annotated[int | None, Query(alias="filter[createdAt][from]", ge=0)] = None,
    created_to: Annotated[int | None, Query(alias="filter[createdAt][to]", ge=0)] = None,
) -> TokenList:
    """Filters: comma lists of statuses and tags (a token with any of the tags matches);
    creation time as epoch milliseconds or a period ("7d"). `pagination.next` goes to older
    tokens (`page[after]`), `pagination.previous` to newer ones (`page[before]`, which wins
    when both are sent)."""
    start, end = _created_range(period, created_from, created_to, tether.clock.now())
    tag_set = comma_list(tags)
    flt = TokenFilter(_statuses(status), idempotency_key,
                      None if tag_set is None else frozenset(tag_set), start, end)
    tokens, pagination = token_page(tether, flt, size, after, before)
    data = [to_item(t, callback_url(request, tether, t.id)) for t in tokens]
    return TokenList(data=data, pagination=pagination)


@router.get("/tokens/{token_id}", summary="Retrieve a token", response_model_exclude_none=True)
def retrieve_token(token_id: IdPath, request: Request, tether: TetherDep) -> TokenDetail:
    token = tether.tokens.retrieve(token_id)
    return to_detail(token, callback_url(request, tether, token.id))


@router.post("/tokens/{token_id}/complete", summary="Complete a token (again: no change)")
def complete_token(token_id: IdPath, tether: TetherDep,
                   body: CompleteTokenBody | None = None) -> Success:
    """The waiting run resumes with `data`. Completing a completed token again keeps the first
    data; a token whose timeout passed can no longer be completed (400)."""
    tether.tokens.complete(token_id, None if body is None else body.data)
    return Success()


@callback_router.post(
    "/tokens/{token_id}/callback/{signature}", openapi_extra={"security": []},
    summary="Complete a token through its callback URL (no API key)",
    responses={401: {"model": ErrorBody, "description": "Wrong signature"}})
def token_callback(token_id: IdPath, signature: IdPath, tether: TetherDep,
                   data: Annotated[Any, Body()] = None) -> Success:
    """The JSON body is the token's data. The signature in the path is the token's `url` as
    returned on creation; any other is refused with 401."""
    check_callback(tether, token_id, signature)
    tether.tokens.complete(token_id, data)
    return Success()
