"""What a person's answer to a deferred tool call means: the data a token was completed with,
turned into Pydantic AI's approval or result for that call. Pure functions (no Tether run, no
agent), so the rules are tested on their own.

An approval's token takes:
  true / false                                  approve / deny with Pydantic AI's message
  {"approved": true}                            approve
  {"approved": true, "override_args": {...}}    approve, calling the tool with these arguments
  {"approved": false, "message": "..."}         deny; the message goes back to the model
An external call's token (a tool that raised CallDeferred) takes the tool's result: any JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import ToolApproved, ToolDenied

from tether.errors import AbortRun


class BadAnswer(AbortRun):
    """A token completed with data that is no answer to an approval: the run fails at once
    (another attempt would read the same data), naming the token and what was expected."""


_EXPECTED = ('true, false, {"approved": true}, {"approved": true, "override_args": {...}} or '
             '{"approved": false, "message": "..."}')


def _bad(token_id: str, tool: str, detail: str) -> BadAnswer:
    return BadAnswer(f"token {token_id} (approval of tool {tool!r}) was completed with {detail}; "
                     f"expected {_EXPECTED}")


def approval(data: Any, *, token_id: str, tool: str) -> ToolApproved | ToolDenied:
    """The approval a token's data gives, or BadAnswer."""
    if isinstance(data, bool):
        return ToolApproved() if data else ToolDenied()
    if not isinstance(data, dict):
        raise _bad(token_id, tool, f"a value of type {_json_type(data)}")
    unknown = sorted(set(data) - {"approved", "override_args", "message"})
    if unknown:
        raise _bad(token_id, tool, f"unknown key(s) {', '.join(map(repr, unknown))}")
    approved = data.get("approved")
    if not isinstance(approved, bool):
        raise _bad(token_id, tool, '"approved" missing or not true/false')
    return _approved(data, token_id, tool) if approved else _denied(data, token_id, tool)


def _approved(data: dict[str, Any], token_id: str, tool: str) -> ToolApproved:
    if "message" in data:
        raise _bad(token_id, tool, '"message" on an approval (it is for denials)')
    override = data.get("override_args")
    if override is not None and not isinstance(override, dict):
        raise _bad(token_id, tool, '"override_args" that is not an object')
    return ToolApproved(override_args=override)


def _denied(data: dict[str, Any], token_id: str, tool: str) -> ToolDenied:
    if "override_args" in data:
        raise _bad(token_id, tool, '"override_args" on a denial')
    message = data.get("message")
    if message is None:
        return ToolDenied()
    if not isinstance(message, str):
        raise _bad(token_id, tool, '"message" that is not a string')
    return ToolDenied(message)


def _json_type(value: Any) -> str:
    names = {str: "string", int: "number", float: "number", list: "array", type(None): "null"}
    return names.get(type(value), type(value).__name__)
