"""JSON in and out: payloads, outputs, step results. Strict JSON (no NaN), Pydantic models allowed.

`dumps` encodes Tether's own values. A value from users goes through `dumps_input` (payloads,
token data, metadata) or `dumps_output` (return values, step results, checkpoints), which also
refuse what a reader could not read back (see limits.py): JSON nested deeper than MAX_JSON_DEPTH,
lone surrogates (no UTF-8 reader can carry them: the HTTP API and the dashboard would fail on
them), and more bytes than the app's limit. The checks work on the encoded text, whose size is
what is stored: compact, with non-ASCII characters escaped as \\uXXXX."""

from __future__ import annotations

import json
from typing import Any

from tether.errors import (
    OutputTooLarge,
    PayloadError,
    PayloadNotStorable,
    PayloadTooLarge,
    SerializationError,
)
from tether.limits import MAX_JSON_DEPTH
from tether.objects.references import PREFIX, Objects, resolve, stored_text


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# one encoder for every call: json.dumps with options builds a new one each time, which costs
# more than encoding a small payload (batch_trigger encodes several values per run)
_ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False)
_UNICODE = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False,
                            ensure_ascii=False)

# keep quotes and brackets; depth does not depend on the kind of bracket: {} become []
_DELETE = bytes(c for c in range(256) if c not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")


def dumps(value: Any, what: str = "value") -> str:
    """Serialize to compact JSON, or raise SerializationError saying what could not be stored."""
    if value is None:
        return "null"
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from None
    except RecursionError:
        raise SerializationError(f"{what} cannot be stored as JSON: it is nested deeper than "
                                 f"the {MAX_JSON_DEPTH} levels Tether stores") from None


def _brackets(text: str) -> bytes:
    """The brackets of the encoder's output `text` that are not inside strings, in order, as
    square brackets."""
    data = text.encode("ascii")  # the encoder escapes every other character
    if b"\\\\" in data:  # escaped backslashes, then escaped quotes: no quote is escaped after
        data = data.replace(b"\\\\", b"")
    if b'\\"' in data:
        data = data.replace(b'\\"', b"")
    marks = data.translate(_SQUARE, _DELETE)
    # a string without brackets is "" now: dropping "" pairs from the left leaves the brackets
    # outside strings, exactly when no quote is left (the first string with a bracket inside
    # keeps its opening quote); else every other piece between quotes is outside the strings
    brackets = marks.replace(b'""', b"")
    return brackets if b'"' not in brackets else b"".join(marks.split(b'"')[::2])


def json_depth(text: str, limit: int | None = None) -> int:
    """How deep arrays and objects nest in the encoder's output `text` ("1" is 0, "[[1]]" 2).
    With `limit`, counting stops at limit + 1: enough to tell that it is over."""
    brackets = _brackets(text)
    depth = 0
    while brackets and (limit is None or depth <= limit):
        brackets = brackets.replace(b"[]", b"")  # peel off the innermost level
        depth += 1
    return depth


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `text` (the encoder's output) nests deeper than `limit`."""
    if text.count("[") + text.count("{") <= limit:  # so few brackets cannot nest deeper
        return False
    return json_depth(text, limit) > limit


def _lone_surrogate(value: Any, text: str) -> str | None:
    """The first lone surrogate in `value` and the JSON around it, None if it holds none."""
    if "\\ud" not in text:  # every surrogate, paired or not, is escaped as \udXXX in `text`
        return None
    unicode = _UNICODE.encode(value)
    try:
        unicode.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{unicode[exc.start]!a} in {unicode[max(0, exc.start - 20): exc.start + 20]!a}"
    return None


def _checked(value: Any, what: str, max_size: int | None) -> tuple[str, int | None, str | None]:
    """(the JSON of `value`, its size if over `max_size`, why it is refused if it is)."""
    text = dumps(value, what)
    if max_size is not None and len(text) > max_size:
        return text, len(text), None
    if too_deep(text):
        return text, None, (f"{what} is nested {json_depth(text)} levels deep; Tether stores "
                            f"JSON nested at most {MAX_JSON_DEPTH} levels (arrays and objects)")
    around = _lone_surrogate(value, text)
    if around is not None:
        return text, None, (f"{what} holds a lone surrogate {around}, which is not Unicode text: "
                            "readers of UTF-8 (the HTTP API, the dashboard) cannot read it back")
    return text, None, None


def too_large(what: str, size: int, limit: int, setting: str) -> str:
    return f"{what} of {size:,} bytes is over the limit of {limit:,} bytes ({setting})"


def dumps_input(value: Any, what: str, max_size: int | None,
                objects: Objects | None = None, owner: str = "") -> str:
    """JSON of a value handed to Tether (a payload, token data, metadata): PayloadNotStorable
    for what cannot be read back, PayloadTooLarge past `max_size` (max_payload_size). With
    `objects`, a value over its threshold is written to the object store and the text returned
    is the reference to it (objects/references.py), its key naming `owner` (the run or token)."""
    try:
        text, size, refused = _checked(value, what, max_size)
    except SerializationError as exc:
        raise PayloadNotStorable(str(exc)) from None
    if size is not None and max_size is not None:
        raise PayloadTooLarge(too_large(what, size, max_size, "max_payload_size"), size, max_size,
                              "max_payload_size")
    if refused is not None:
        raise PayloadNotStorable(refused)
    return stored_text(text, objects, owner)


def dumps_output(value: Any, what: str, max_size: int | None,
                 objects: Objects | None = None, owner: str = "") -> str:
    """JSON of a value a task produced (its return value, a step's result, a checkpoint):
    SerializationError for what cannot be read back, OutputTooLarge (which fails the run at
    once) past `max_size` (max_output_size)."""
    text, size, refused = _checked(value, what, max_size)
    if size is not None and max_size is not None:
        raise OutputTooLarge(too_large(what, size, max_size, "max_output_size"), size, max_size,
                             "max_output_size")
    if refused is not None:
        raise SerializationError(refused)
    return stored_text(text, objects, owner)


def safe_text(text: str) -> str:
    """`text` with lone surrogates written out as \\udXXX, so every UTF-8 reader can show it
    (exception messages, tracebacks and log lines are stored as they come)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def loads(text: str | None) -> Any:
    """The value stored as `text`; a reference to an object store is read from its store."""
    if text is None:
        return None
    if text.startswith(PREFIX):  # a reference or a wrapped value (objects/references.py)
        return resolve(text)
    return json.loads(text)


def parse_payload_text(text: str, what: str = "payload") -> Any:
    """Parse a payload given as text (CLI, HTTP) into a JSON value with a clear error that calls
    it `what` (the CLI's token data is not a payload)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadNotStorable(f"{what} is nested deeper than the {MAX_JSON_DEPTH} levels "
                                 "Tether stores") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise PayloadNotStorable(f"{what} cannot be read: {exc}") from None
