"""A person's answer to a deferred tool call (the data a token was completed with) -> Pydantic
AI's approval: every JSON value either maps to an approval or a denial, or fails with a message
naming the token and the expected shapes; never another exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pydantic_ai")

from pydantic_ai import ToolApproved, ToolDenied

from tether.integrations.pydantic_ai import BadAnswer
from tether.integrations.pydantic_ai._answers import approval

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def answer(data: Any) -> ToolApproved | ToolDenied:
    return approval(data, token_id="waitpoint_x", tool="refund")


@pytest.mark.parametrize(("data", "expected"), [
    (True, ToolApproved()),
    (False, ToolDenied()),
    ({"approved": True}, ToolApproved()),
    ({"approved": True, "override_args": {"amount": 5}}, ToolApproved(override_args={"amount": 5})),
    ({"approved": False}, ToolDenied()),
    ({"approved": False, "message": "too much"}, ToolDenied("too much")),
])
def test_the_documented_answers(data: Any, expected: ToolApproved | ToolDenied) -> None:
    assert answer(data) == expected


@pytest.mark.parametrize(("data", "detail"), [
    ("yes", "a value of type string"),
    (1, "a value of type number"),
    (None, "a value of type null"),
    ([True], "a value of type array"),
    ({}, '"approved" missing'),
    ({"approved": "yes"}, '"approved" missing or not true/false'),
    ({"approved": True, "ok": 1}, "unknown key(s) 'ok'"),
    ({"approved": True, "message": "x"}, '"message" on an approval'),
    ({"approved": True, "override_args": [1]}, '"override_args" that is not an object'),
    ({"approved": False, "override_args": {}}, '"override_args" on a denial'),
    ({"approved": False, "message": 3}, '"message" that is not a string'),
])
def test_anything_else_fails_the_run_with_a_clear_message(data: Any, detail: str) -> None:
    with pytest.raises(BadAnswer) as caught:
        answer(data)
    text = str(caught.value)
    assert "token waitpoint_x (approval of tool 'refund')" in text and detail in text
    assert '{"approved": false, "message": "..."}' in text


@given(json_values)
def test_every_json_value_is_an_answer_or_a_bad_answer(data: Any) -> None:
    try:
        result = answer(data)
    except BadAnswer as error:
        assert "waitpoint_x" in str(error)
        return
    assert isinstance(result, ToolApproved | ToolDenied)
    if isinstance(result, ToolApproved):
        assert data is True or (isinstance(data, dict) and data["approved"] is True)
        assert result.override_args == (data.get("override_args") if isinstance(data, dict)
                                        else None)
    else:
        assert data is False or (isinstance(data, dict) and data["approved"] is False)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=3),
       st.one_of(st.none(), st.text()))
def test_an_approval_carries_any_override_arguments_unchanged(args: dict[str, Any],
                                                               message: str | None) -> None:
    assert answer({"approved": True, "override_args": args}) == ToolApproved(override_args=args)
    denial = {"approved": False} if message is None else {"approved": False, "message": message}
    assert answer(denial) == (ToolDenied() if message is None else ToolDenied(message))
