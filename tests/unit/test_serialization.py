"""serialization.py's checks of users' JSON against a plain walk of the value: the depth counted
on the encoded text (strings may hold brackets, quotes and backslashes), lone surrogates, sizes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import (
    OutputTooLarge,
    PayloadError,
    PayloadNotStorable,
    PayloadTooLarge,
    SerializationError,
)
from tether.limits import MAX_JSON_DEPTH
from tether.serialization import (
    dumps,
    dumps_input,
    dumps_output,
    json_depth,
    parse_payload_text,
    safe_text,
    too_deep,
)

# text that trips a naive scan of JSON: brackets, quotes and backslashes in strings
TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\\\/,:ab\n\x00é😀\ud800\udc00'), max_size=8)
KEYS = st.text(alphabet=st.sampled_from('[]{}"\\ak'), max_size=4)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=40)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    return False


def nested(depth: int, leaf: Any = "[[{") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 3 else {"]}\\\"": value}
    return value


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_depth_of_the_text_is_the_depth_of_the_value(value: Any) -> None:
    text = dumps(value)
    assert json_depth(text) == depth_of(value)
    for limit in (0, 1, 3):
        assert (json_depth(text, limit) > limit) == (depth_of(value) > limit)
        assert too_deep(text, limit) == (depth_of(value) > limit)


@settings(max_examples=50, deadline=None)
@given(JSON, st.integers(0, 2 * MAX_JSON_DEPTH))
def test_deep_values_are_measured_exactly(leaf: Any, depth: int) -> None:
    value = nested(depth, leaf)
    assert json_depth(dumps(value)) == depth + depth_of(leaf)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_refused_exactly_when_too_deep_or_holding_a_lone_surrogate(value: Any) -> None:
    value = nested(MAX_JSON_DEPTH - 3, value)
    refused = depth_of(value) > MAX_JSON_DEPTH or has_surrogate(value)
    try:
        text = dumps_input(value, "payload", None)
    except PayloadNotStorable:
        assert refused
    else:
        assert not refused and json.loads(text) == value


def test_the_limit_itself_is_stored() -> None:
    assert dumps_output(nested(MAX_JSON_DEPTH), "output", None)
    with pytest.raises(SerializationError, match="output is nested 101 levels deep"):
        dumps_output(nested(MAX_JSON_DEPTH + 1), "output", None)


def test_deeper_than_the_encoder_can_go_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="nested deeper than the 100 levels"):
        dumps(nested(5000))
    with pytest.raises(PayloadNotStorable, match="nested deeper than the 100 levels"):
        parse_payload_text("[" * 5000 + "]" * 5000)
    with pytest.raises(PayloadNotStorable, match="4300 digits"):
        parse_payload_text("9" * 5000)
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_payload_text("[1,")


def test_pairs_of_surrogates_are_characters_and_lone_ones_are_refused() -> None:
    assert json.loads(dumps_input(["😀", "\U0010ffff"], "payload", None)) == ["😀", "\U0010ffff"]
    for lone in ("\ud83d", "\ude00", "a\ud83d\ude00b", "\udfff\ud800"):
        with pytest.raises(PayloadNotStorable, match="lone surrogate"):
            dumps_input({"x": [lone]}, "payload", None)
    with pytest.raises(PayloadNotStorable, match=r"lone surrogate '\\ud800' in "):
        dumps_input({"\ud800": 1}, "payload", None)  # keys too


def test_sizes_are_the_stored_text() -> None:
    text = dumps_input("é" * 3, "payload", 20)  # stored as "\u00e9\u00e9\u00e9": 20 bytes
    assert len(text) == 20
    with pytest.raises(PayloadTooLarge, match=r"^payload of 20 bytes is over the limit of 19 "
                                              r"bytes \(max_payload_size\)$") as caught:
        dumps_input("é" * 3, "payload", 19)
    assert (caught.value.size, caught.value.limit, caught.value.setting) == (20, 19,
                                                                             "max_payload_size")
    with pytest.raises(OutputTooLarge, match=r"^result of 3 bytes is over the limit of 2 bytes "
                                             r"\(max_output_size\)$"):
        dumps_output(100, "result", 2)


def test_safe_text_writes_lone_surrogates_out() -> None:
    assert safe_text("plain é 😀") == "plain é 😀"
    assert safe_text("bad \udcff byte") == "bad \\udcff byte"
