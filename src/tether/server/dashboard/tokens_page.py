"""Waitpoint tokens: the ones runs wait for, and a form to complete one with JSON data."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from tether.errors import TetherError
from tether.server.dashboard.auth import FormViewer, PageViewer
from tether.server.dashboard.web import local_url, new_router, page, redirect, tether_of

router = new_router()

STATUSES = ["WAITING", "COMPLETED", "TIMED_OUT"]
PAGE_SIZE = 100


def parse_json(text: str) -> tuple[Any, str | None]:
    """The value of `text` (empty means null), or an error message saying where it is wrong."""
    if not text.strip():
        return None, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, (f"That is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
                      'Example: {"approved": true}')


def _tokens_page(request: Request, status: str, errors: dict[str, str] | None = None,
                 drafts: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    wanted = status.upper() if status.upper() in STATUSES else ""
    tokens = tether_of(request).tokens.list(status=wanted or None, limit=PAGE_SIZE)
    return page(request, "tokens.html",
                {"tokens": tokens, "status": wanted, "statuses": STATUSES, "errors": errors or {},
                 "drafts": drafts or {}, "nav": "tokens"}, status_code)


@router.get("/tokens")
def tokens_page(request: Request, viewer: PageViewer,
                status: Annotated[str, Query()] = "WAITING") -> HTMLResponse:
    return _tokens_page(request, status)


@router.post("/tokens/complete")
def complete_token(request: Request, viewer: FormViewer, token_id: Annotated[str, Form()],
                   data: Annotated[str, Form()] = "",
                   next: Annotated[str, Form()] = "/tokens") -> Response:
    target = local_url(next, "/tokens")
    value, problem = parse_json(data)
    if problem is None:
        try:
            token = tether_of(request).tokens.complete(token_id, value)
        except TetherError as exc:
            problem = str(exc)
        else:
            suffix = f"; run {token.run_id} resumes" if token.run_id else ""
            return redirect(target, f"Token {token_id} completed{suffix}.")
    if target != "/tokens":
        return redirect(target, problem, error=True)
    return _tokens_page(request, "WAITING", {token_id: problem}, {token_id: data}, 422)
