"""JSON in and out: payloads, outputs, step results. Strict JSON (no NaN), Pydantic models allowed."""

from __future__ import annotations

import json
from typing import Any

from tether.errors import PayloadError, SerializationError


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# one encoder for every call: json.dumps with options builds a new one each time, which costs
# more than encoding a small payload (batch_trigger encodes several values per run)
_ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False)


def dumps(value: Any, what: str = "value") -> str:
    """Serialize to compact JSON, or raise SerializationError saying what could not be stored."""
    if value is None:
        return "null"
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from None


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def parse_payload_text(text: str) -> Any:
    """Parse a payload given as text (CLI, HTTP) into a JSON value with a clear error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
