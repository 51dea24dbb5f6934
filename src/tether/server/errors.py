"""Every error answer is JSON `{"error": "message"}`, as Trigger.dev's SDK expects, with a status
from the message's meaning: 400/401/403/404/413/422 (400: a body that is not JSON, or a request
that cannot apply to the current state; never 409, which the SDK retries)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tether.errors import (
    ConfigurationError,
    InvalidTransition,
    PayloadError,
    PayloadNotStorable,
    PayloadTooLarge,
    QueueFull,
    QueueNotFound,
    RunNotFound,
    ScheduleNotFound,
    SerializationError,
    StorageUnavailable,
    TetherError,
    TokenNotFound,
    TokenRunEnded,
    TokenTimedOut,
    UnknownTask,
)
from tether.limits import MAX_JSON_DEPTH

# A service-layer error -> its HTTP status. Anything else from Tether is a 400.
STATUS_OF: dict[type[TetherError], int] = {
    RunNotFound: 404,
    QueueNotFound: 404,
    # a queue at its max_queued: the caller may try again later
    QueueFull: 429,
    TokenNotFound: 404,
    ScheduleNotFound: 404,
    UnknownTask: 404,
    # a request that cannot apply to the thing as it is: 400, not 409, which the SDK retries
    InvalidTransition: 400,
    TokenTimedOut: 400,
    TokenRunEnded: 400,
    PayloadError: 422,
    # JSON that not every reader could read back (too deep, a lone surrogate, NaN): a bad
    # request, whatever the task; too large: 413 with the size and the limit
    PayloadNotStorable: 400,
    PayloadTooLarge: 413,
    SerializationError: 422,
    ConfigurationError: 422,
    StorageUnavailable: 503,
}


class ApiError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def status_for(exc: TetherError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts)


def position(text: str, offset: int) -> str:
    """Where a character offset is, as `json` counts: "line 2 column 14"."""
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"line {line} column {column}"


def not_json(exc: RequestValidationError) -> str | None:
    """The message for a body that is not JSON (FastAPI reports it as a `json_invalid` error at
    the character offset where parsing stopped), else None."""
    for err in exc.errors():
        if err.get("type") != "json_invalid":
            continue
        reason = str((err.get("ctx") or {}).get("error") or "not JSON")
        offset = next((p for p in err.get("loc", ()) if isinstance(p, int)), None)
        if offset is not None and isinstance(exc.body, str):
            reason += f" at {position(exc.body, offset)}"
        return f"request body is not valid JSON: {reason}"
    return None


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.message)


async def _tether_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TetherError)
    return error_response(status_for(exc), str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 for a request that does not hold; 400 for a body that is not JSON at all."""
    assert isinstance(exc, RequestValidationError)
    broken = not_json(exc)
    if broken is not None:
        return error_response(400, broken)
    return error_response(422, _describe(exc))


def _unparsed(cause: BaseException | None) -> str | None:
    """Why FastAPI could not parse a JSON body that is well-formed ("There was an error parsing
    the body" says nothing)."""
    if isinstance(cause, RecursionError):
        return (f"the request body is JSON nested too deep to parse; Tether stores JSON nested "
                f"at most {MAX_JSON_DEPTH} levels (arrays and objects)")
    if isinstance(cause, ValueError):  # an integer of more than 4300 digits
        return f"the request body cannot be parsed: {cause}"
    return None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _unparsed(exc.__cause__) or str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(TetherError, _tether_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
