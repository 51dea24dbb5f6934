"""Model responses and tool results as an agent's steps store them: reduced to JSON by Pydantic
AI's type adapters, through Tether's strict JSON and back, they come back equal (every part, the
usage, the timestamps), whatever text and arguments the model produced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pydantic_ai")

from pydantic_ai.durable_exec import JSON_CODEC
from pydantic_ai.messages import ModelResponse, TextPart, ThinkingPart, ToolCallPart
from pydantic_ai.usage import RequestUsage

from tether.serialization import dumps_output, loads

scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
parts = st.one_of(
    st.builds(TextPart, content=st.text()),
    st.builds(ThinkingPart, content=st.text()),
    st.builds(ToolCallPart, tool_name=st.text(min_size=1, max_size=20),
              args=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
              tool_call_id=st.text(min_size=1, max_size=30)),
)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))
responses = st.builds(
    ModelResponse, parts=st.lists(parts, min_size=1, max_size=4),
    usage=st.builds(RequestUsage, input_tokens=st.integers(0, 10**7),
                    output_tokens=st.integers(0, 10**7)),
    model_name=st.none() | st.text(max_size=20), timestamp=moments,
    provider_name=st.none() | st.text(max_size=10))


def through_a_step(value: Any, tp: Any) -> Any:
    """What a model request's step does with its result, and what a replay reads back."""
    text = dumps_output(JSON_CODEC.dump(tp, value), "the result of step 'x'", None)
    return JSON_CODEC.load(tp, loads(text))


@settings(max_examples=150, deadline=None)
@given(responses)
def test_a_model_response_comes_back_equal(response: ModelResponse) -> None:
    assert through_a_step(response, ModelResponse) == response


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_a_tool_result_comes_back_equal(result: Any) -> None:
    assert through_a_step(result, Any) == result
