"""References to values kept in an object store, stored in the row in place of the value.

A reference is the JSON text `{"$tether_object":"<key>","store":"<location>","size":N,
"sha256":"<hex>"}`. So that no user value is ever mistaken for one, a value whose JSON starts
with `{"$tether_` is stored wrapped: `{"$tether_literal":<its JSON>}`, and unwrapped when read.
Both checks look at the first characters of the text only: values under the threshold cost a
len() and a startswith()."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether.clock import new_id
from tether.errors import ObjectStoreUnavailable
from tether.objects.stores import ObjectStore, register, registered

DEFAULT_THRESHOLD = 512 * 1024  # bytes of JSON above which a value goes to the store

PREFIX = '{"$tether_'
REFERENCE = '{"$tether_object":'
LITERAL = '{"$tether_literal":'


@dataclass
class Objects:
    """An app's offloading: its store (None: values stay in the database) and its threshold."""

    store: ObjectStore | None
    threshold: int = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.store is not None:
            self.store = register(self.store)


def stored_text(text: str, objects: Objects | None, owner: str = "") -> str:
    """What the row keeps for the JSON `text`: the text, a reference to an object written first
    (when it is over the threshold and a store is configured), or the text wrapped so it cannot
    be read as a reference. ObjectStoreUnavailable when the store cannot be written. `owner`:
    the run or token whose row will name the object, written into its key (the sweep checks
    that row)."""
    if objects is not None and objects.store is not None and len(text) > objects.threshold:
        return _object_text(text.encode("utf-8"), objects, owner)
    if text.startswith(PREFIX):
        return LITERAL + text + "}"
    return text


def is_reference(text: str | None) -> bool:
    return text is not None and text.startswith(REFERENCE)


def reference(text: str) -> dict[str, Any]:
    """The fields of the reference `text` (key, store, size, sha256)."""
    fields: dict[str, Any] = json.loads(text)
    return fields


def fetch(text: str) -> bytes:
    """The bytes of the object the reference `text` names, checked against its digest."""
    ref = reference(text)
    data = registered(ref["store"]).get(ref["$tether_object"])
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise ObjectStoreUnavailable(f"object {ref['$tether_object']} in {ref['store']} does not "
                                     "match its digest (changed or truncated)")
    return data


def resolve(text: str) -> Any:
    """The value stored as `text`, which starts with `{"$tether_`: a reference or a literal."""
    if text.startswith(REFERENCE):
        return json.loads(fetch(text))
    if text.startswith(LITERAL):
        return json.loads(text)["$tether_literal"]
    return json.loads(text)


def copied(text: str, objects: Objects | None, owner: str) -> str:
    """A reference of `owner`'s own to a copy of the object the reference `text` names (written
    to the app's store, else to the one it is in), so that deleting the first owner's objects
    leaves it whole: a fork's copied step rows. Other texts are returned as they are."""
    if not text.startswith(REFERENCE):
        return text
    data = fetch(text)
    target = objects if objects is not None and objects.store is not None else \
        Objects(registered(reference(text)["store"]), 0)
    return _object_text(data, target, owner)


def full_text(text: str | None) -> str | None:
    """The JSON of the value stored as `text` (a reference read from its store)."""
    if text is None or not text.startswith(PREFIX):
        return text
    if text.startswith(REFERENCE):
        return fetch(text).decode("utf-8")
    return json.dumps(resolve(text), separators=(",", ":"))


def object_keys(texts: Iterable[str | None]) -> dict[str, list[str]]:
    """The objects the stored `texts` name, by store location: what to delete with their rows."""
    found: dict[str, list[str]] = {}
    for text in texts:
        if text is not None and text.startswith(REFERENCE):
            ref = reference(text)
            found.setdefault(ref["store"], []).append(ref["$tether_object"])
    return found


def stored_packet(data: bytes, objects: Objects | None) -> bytes:
    """What the packets table keeps for an uploaded payload packet's bytes (any bytes, JSON or
    not): as stored_text, with bytes that start like a reference wrapped the same way."""
    if objects is not None and objects.store is not None and len(data) > objects.threshold:
        return _object_text(data, objects).encode("utf-8")
    if data.startswith(PREFIX.encode()):
        return LITERAL.encode() + data + b"}"
    return data


def object_key(owner: str = "") -> str:
    """A new object's key: time-ordered (new_id), then its owner's id if it has one."""
    return f"{new_id('obj')}.{owner}" if owner else new_id("obj")


def key_owner(key: str) -> tuple[str, str]:
    """(the time-ordered part, the owner's id or "") of an object's key."""
    made, _, owner = key.partition(".")
    return made, owner


def _object_text(data: bytes, objects: Objects, owner: str = "") -> str:
    """A reference to `data`, written to the store first."""
    assert objects.store is not None
    key = object_key(owner)
    objects.store.put(key, data)
    return json.dumps({"$tether_object": key, "store": objects.store.location, "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}, separators=(",", ":"))


def packet_bytes(stored: bytes) -> bytes:
    """The packet's bytes from what the packets table keeps (stored_packet)."""
    if not stored.startswith(PREFIX.encode()):
        return stored
    if stored.startswith(REFERENCE.encode()):
        return fetch(stored.decode("utf-8"))
    return stored[len(LITERAL):-1]
