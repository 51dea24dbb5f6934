"""The reference encoding: what a row keeps for a value (the value's JSON, a reference to an
object, or a value that looks like a reference, wrapped) always reads back as the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.objects import FileStore, Objects, is_reference, stored_text
from tether.objects.references import object_keys
from tether.serialization import dumps, loads

KEYS = st.sampled_from(["$tether_object", "$tether_literal", "$tether_", "$tether_x", "store",
                        "size", "sha256", "a"])
LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(
    ['{"$tether_object":"obj_1"}', '{"$tether_literal":1}'])
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=4),
                      max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_values_kept_in_the_row_read_back_unchanged(value: Any) -> None:
    text = stored_text(dumps(value), None)
    assert not is_reference(text)  # no value is ever taken for a reference
    assert loads(text) == value


@settings(max_examples=60, deadline=None)
@given(VALUES)
def test_values_offloaded_read_back_unchanged(tmp_path_factory: Any, value: Any) -> None:
    store = FileStore(Path(tmp_path_factory.mktemp("objects")))
    text = stored_text(dumps(value), Objects(store, threshold=0))
    assert is_reference(text)
    assert loads(text) == value
    assert list(object_keys([text]).values()) == [list(store.keys())]


def test_a_reference_is_small_and_names_its_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    text = stored_text(dumps({"blob": "x" * 100_000}), Objects(store, threshold=1000))
    assert len(text) < 400 and store.location in text
    assert stored_text('{"a":1}', Objects(store, threshold=1000)) == '{"a":1}'
