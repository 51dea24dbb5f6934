"""Payloads as Trigger.dev's SDK sends them, and the packets it uploads for large ones.

`options.payloadType` says how `payload` is encoded:
- `application/super+json`: a string holding superjson's `{"json": value, "meta": {...}}`. The task
  gets the plain JSON value: `meta` annotations are applied where JSON can say the same thing
  (a Date stays its ISO-8601 string, a bigint becomes an integer, a Map with text keys an object,
  a Set a list, `undefined` members are dropped); anything else keeps its JSON form.
- `application/json`: a string of JSON (a non-string is taken as the value itself).
- `text/plain`: a string, handed to the task as it is.
- `application/store`: the path of a packet uploaded earlier (payloads of 128 KB and more). Its
  file name tells the encoding: `.txt` is text; otherwise JSON, superjson when it is an object of
  `json` and `meta` only (the SDK uploads superjson for every non-string payload).
- absent: `payload` is the JSON value itself (REST callers).

Uploading: `PUT /api/v2/packets/{filename}` answers a `presignedUrl` on this server, signed (HMAC,
see `server/signing.py`) for one path and one hour; the SDK PUTs the bytes there, without its API
key, then triggers with `payload: storagePath` (the same as the filename). A packet is refused
(413) past the app's `max_payload_size`, as is the payload decoded from it. A packet larger than
the app's offload threshold is kept in its object store, the packets row keeping a reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tether.app import Tether
from tether.errors import PayloadError
from tether.objects.references import packet_bytes, stored_packet
from tether.serialization import parse_payload_text, too_large
from tether.server import signing
from tether.server.deps import ApiKeyDep, TetherDep
from tether.server.errors import ApiError

SUPERJSON = "application/super+json"
STORE = "application/store"
PAYLOAD_TYPES = ("application/json", SUPERJSON, "text/plain", STORE)
UPLOAD_PURPOSE = "packet-upload"
UPLOAD_SECONDS = 3600
MAX_PACKET_BYTES = 64 * 1024 * 1024  # the body of a request of batch items (NDJSON)
UPLOAD_PATH = "/api/v1/packet-uploads/"

_UNDEFINED = object()


# -- superjson --------------------------------------------------------------------------------
def split_path(path: str) -> list[str]:
    """A superjson path ("a.b\\.c.0") as its parts (["a", "b.c", "0"])."""
    parts, current, escaped = [], "", False
    for char in path:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _convert(value: Any, annotation: Any) -> Any:
    if annotation == "undefined":
        return _UNDEFINED
    if annotation == "bigint" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if annotation == "map" and isinstance(value, list):
        pairs = [p for p in value if isinstance(p, list) and len(p) == 2]
        if len(pairs) == len(value) and all(isinstance(k, str | int | float) for k, _ in pairs):
            return {str(k): v for k, v in pairs}
    return value  # Date (already ISO-8601), set (a list), regexp, URL, Error, classes: as sent


def _apply_tree(value: Any, tree: Any) -> Any:
    """Apply a superjson annotation tree: `[annotation]` or `[annotation, {path: tree}]`; the
    inner paths first, as superjson does."""
    if not isinstance(tree, list) or not tree:
        return value
    if len(tree) > 1 and isinstance(tree[1], dict):
        for path, child in tree[1].items():
            value = _apply_at(value, split_path(path), child)
    return _convert(value, tree[0])


def _apply_at(value: Any, parts: list[str], tree: Any) -> Any:
    if not parts:
        return _apply_tree(value, tree)
    head, rest = parts[0], parts[1:]
    if isinstance(value, list) and head.isdigit() and int(head) < len(value):
        inner = _apply_at(value[int(head)], rest, tree)
        value[int(head)] = None if inner is _UNDEFINED else inner
    elif isinstance(value, dict) and head in value:
        inner = _apply_at(value[head], rest, tree)
        if inner is _UNDEFINED:
            del value[head]
        else:
            value[head] = inner
    return value


def from_superjson(document: Any) -> Any:
    """The plain JSON value of a parsed superjson document `{"json": ..., "meta": ...}`."""
    if not isinstance(document, dict) or "json" not in document:
        raise PayloadError('an application/super+json payload must be superjson: an object '
                           'with a "json" member (and optionally "meta")')
    value = document["json"]
    meta = document.get("meta")
    values = meta.get("values") if isinstance(meta, dict) else None
    if isinstance(values, list):  # the value itself is annotated
        value = _apply_tree(value, values)
    elif isinstance(values, dict):
        for path, tree in values.items():
            value = _apply_at(value, split_path(path), tree)
    return None if value is _UNDEFINED else value


def _is_superjson(document: Any) -> bool:
    return isinstance(document, dict) and "json" in document and set(document) <= {"json", "meta"}


# -- decoding a trigger's payload -------------------------------------------------------------
def _text(payload: Any, payload_type: str) -> str:
    if not isinstance(payload, str):
        raise PayloadError(f"a payload of type {payload_type} must be sent as a string, "
                           f"got {type(payload).__name__}")
    return payload


def _packet(tether: Tether, path: str) -> Any:
    data = tether.storage.get_packet(path)
    if data is None:
        raise PayloadError(f"no uploaded payload packet at {path!r}: upload it first "
                           "(PUT /api/v2/packets/{filename}, then PUT the bytes to presignedUrl)")
    data = packet_bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"the payload packet at {path!r} is not UTF-8 text") from None
    if path.endswith(".txt"):
        return text
    document = parse_payload_text(text)
    return from_superjson(document) if _is_superjson(document) else document


def decode_payload(tether: Tether, payload: Any, payload_type: str | None) -> Any:
    """The JSON value a task gets for a payload sent with `payload_type` (see the module doc).
    PayloadError (422) for an unknown type or a payload that does not match it."""
    if payload_type is None:
        return payload
    kind = payload_type.split(";")[0].strip().lower()
    if kind == "application/json":
        return parse_payload_text(payload) if isinstance(payload, str) else payload
    if kind == SUPERJSON:
        document = parse_payload_text(payload) if isinstance(payload, str) else payload
        return from_superjson(document)
    if kind == "text/plain":
        return _text(payload, kind)
    if kind == STORE:
        return _packet(tether, _text(payload, kind))
    raise PayloadError(f"unknown payloadType {payload_type!r}; supported: {', '.join(PAYLOAD_TYPES)}")


# -- packets ----------------------------------------------------------------------------------
class PacketUrl(BaseModel):
    presignedUrl: str
    storagePath: str


def check_path(path: str) -> str:
    parts = path.split("/")
    if not path or len(path) > 1000 or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise ApiError(422, f"invalid packet path {path!r}: use 1 to 1000 characters of "
                            "non-empty segments separated by '/', without '.' or '..'")
    return path


def _public_base(request: Request) -> str:
    config = getattr(request.app.state, "config", None)
    base = getattr(config, "public_url", None) or str(request.base_url)
    return str(base).rstrip("/")


def upload_url(request: Request, tether: Tether, path: str, now: float) -> str:
    expires = str(int(now) + UPLOAD_SECONDS)
    signature = signing.sign(tether, UPLOAD_PURPOSE, f"{path}\n{expires}")
    return (f"{_public_base(request)}{UPLOAD_PATH}{quote(path)}"
            f"?expires={expires}&signature={signature}")


async def read_limited(request: Request, limit: int,
                       too_big: Callable[[int | None], str]) -> bytes:
    """The request body, refused with 413 `too_big(size)` past `limit` bytes: by its declared
    length before reading, else as it streams in (then `size` is None)."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        raise ApiError(413, too_big(int(size)))
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, too_big(None))
        chunks.append(chunk)
    return b"".join(chunks)


def _packet_too_large(limit: int) -> Callable[[int | None], str]:
    def message(size: int | None) -> str:
        if size is None:
            return f"payload packet is over the limit of {limit:,} bytes (max_payload_size)"
        return too_large("payload packet", size, limit, "max_payload_size")
    return message


def check_upload(tether: Tether, path: str, expires: str, signature: str) -> None:
    """403 unless the upload URL of `path` is signed and not expired (the request guard calls
    this before the body is read; the route again)."""
    value = f"{path}\n{expires}"
    if not expires.isdigit() or not signature or \
            not signing.verify(tether, UPLOAD_PURPOSE, value, signature):
        raise ApiError(403, "invalid upload signature: ask PUT /api/v2/packets/{filename} "
                            "for a new presignedUrl")
    if int(expires) < time.time():
        raise ApiError(403, "this upload URL expired: ask PUT /api/v2/packets/{filename} "
                            "for a new presignedUrl")


async def signed_upload(request: Request, path: str, tether: TetherDep,
                        expires: Annotated[str, Query()] = "",
                        signature: Annotated[str, Query()] = "") -> bytes:
    """The body of an upload whose URL signature holds (checked before the body is read),
    refused past the app's max_payload_size."""
    await run_in_threadpool(check_upload, tether, path, expires, signature)
    limit = tether.max_payload_size
    return await read_limited(request, limit, _packet_too_large(limit))


router = APIRouter(tags=["payloads"])
uploads = APIRouter(tags=["payloads"])  # authenticated by the URL's signature, not an API key


@router.put("/api/v2/packets/{filename:path}", response_model=PacketUrl)
def create_upload_url(filename: str, request: Request, tether: TetherDep,
                      key: ApiKeyDep) -> PacketUrl:
    """A URL to PUT a large payload's bytes to; trigger with `payload: storagePath` and
    `payloadType: application/store` afterwards."""
    path = check_path(filename)
    return PacketUrl(presignedUrl=upload_url(request, tether, path, time.time()), storagePath=path)


@router.get("/api/v1/packets/{path:path}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def read_packet(path: str, tether: TetherDep, key: ApiKeyDep) -> Response:
    """The bytes of an uploaded packet."""
    data = tether.storage.get_packet(check_path(path))
    if data is None:
        raise ApiError(404, f"no payload packet at {path!r}")
    data = packet_bytes(data)
    media = "application/json" if path.endswith(".json") else "text/plain; charset=utf-8"
    return Response(data, media_type=media)


@uploads.put(UPLOAD_PATH + "{path:path}", status_code=200, response_class=Response,
             openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
def upload_packet(path: str, tether: TetherDep,
                  data: Annotated[bytes, Depends(signed_upload)]) -> Response:
    """Store a packet's bytes: the target of a `presignedUrl`. The URL's signature (`expires`,
    `signature`: one path, one hour) stands in for the API key."""
    tether.storage.put_packet(check_path(path), stored_packet(data, tether.objects), time.time())
    return Response(status_code=200)
