"""TetherAgent: a Pydantic AI agent run durably inside a Tether task.

`durable = TetherAgent(agent)` at import time; inside an `async def` task,
`await durable.run(prompt)` finds the run through `tether.current_context()`. Model requests and
tool calls are steps (TetherDurability); tools that wait for a person (approval required, or
deferred to outside) wait on Tether tokens, one per call; the usage goes into the run's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic
from weakref import WeakKeyDictionary

from pydantic_ai import DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.output import OutputDataT
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import AgentDepsT

from tether.durations import Duration
from tether.engine.context import Context
from tether.engine.current import current_context
from tether.errors import ConfigurationError, WaitTimeout
from tether.integrations.pydantic_ai._answers import approval
from tether.integrations.pydantic_ai._durability import TetherDurability
from tether.options import Retry

USAGE_KEY = "agent.usage"
"""The run's metadata key of the agents' usage: {agent name: {requests, input_tokens,
output_tokens, tool_calls, cost_usd, unpriced_requests}}."""
WAITING_KEY = "agent.waiting"
"""The run's metadata key of the tool calls waiting for a person: [{token, tool, args,
tool_call_id, kind ("approval" or "external")}], removed once they are all answered."""

TIMED_OUT = "No one approved this call in time, so it was not made."
"""What the model reads for an approval whose token timed out (`approval_timeout`)."""

_usage: WeakKeyDictionary[Context, dict[str, dict[str, Any]]] = WeakKeyDictionary()
"""This attempt's usage per agent: built again by a replay (the stored responses carry their
usage), so the metadata says the same whatever attempt wrote it last."""


class TetherAgent(Generic[AgentDepsT, OutputDataT]):
    """An agent whose runs are durable inside a Tether task. Build it at import time, beside the
    agent; `run` only works in an `async def` task's run (it raises `NoRunContext` elsewhere).

    `model_retry` / `tool_retry`: retries in place for a failing model request or tool call (the
    step's `retry`; None: a failure fails the attempt, and the run's own retries replay it).
    `approval_timeout`: how long a tool call waits for its person (None: no limit); past it, an
    approval counts as denied (the model reads TIMED_OUT) and a deferred call's wait raises
    `WaitTimeout` in the task. `approval_tags`: tags of the tokens (the dashboard and
    `tether tokens list --tag` find them); each token also gets `tool:<name>`.
    """

    def __init__(self, agent: AbstractAgent[AgentDepsT, OutputDataT], *, name: str | None = None,
                 model_retry: Retry | None = None, tool_retry: Retry | None = None,
                 approval_timeout: Duration | None = None,
                 approval_tags: Sequence[str] = ("agent-approval",)) -> None:
        self.agent = agent
        self.name: str = name or agent.name or ""
        if not self.name:
            raise ConfigurationError(
                "TetherAgent needs a name: give the agent one (Agent(..., name='support')) or pass "
                "TetherAgent(agent, name='support'); it names the agent's steps, so keep it stable")
        if TetherDurability.from_agent(agent) is not None:
            raise ConfigurationError(
                f"agent {self.name!r} already has a TetherDurability capability: pass the agent "
                "to TetherAgent without it (TetherAgent adds it to each run)")
        self.durability: TetherDurability[AgentDepsT] = TetherDurability(
            name=self.name, model_retry=model_retry, tool_retry=tool_retry)
        self.approval_timeout = approval_timeout
        self.approval_tags = list(approval_tags)

    def __repr__(self) -> str:
        return f"<TetherAgent {self.name!r}>"

    async def run(self, user_prompt: Any = None, *, output_type: Any = None,
                  message_history: Sequence[ModelMessage] | None = None,
                  deferred_tool_results: DeferredToolResults | None = None,
                  **kwargs: Any) -> AgentRunResult[Any]:
        """Run the agent as `agent.run` does (the same arguments), durably: a resumed run gets
        each model response and tool result from its steps. Tool calls that need a person wait
        for a token each and the agent goes on with the answers; the result is the last
        segment's (`all_messages()` has the whole conversation). If `output_type` (or the
        agent's) includes `DeferredToolRequests`, those are returned to you instead."""
        ctx = current_context()
        wanted = self.agent.output_type if output_type is None else output_type
        handled_here = not _includes_deferred(wanted)
        types = [*_as_list(wanted), DeferredToolRequests] if handled_here else wanted
        capabilities = [self.durability, *(kwargs.pop("capabilities", None) or ())]
        prompt, history, answers = user_prompt, message_history, deferred_tool_results
        while True:
            result = await self.agent.run(prompt, output_type=types, message_history=history,
                                          deferred_tool_results=answers,
                                          capabilities=capabilities, **kwargs)
            self._count(ctx, result)
            if not handled_here or not isinstance(result.output, DeferredToolRequests):
                return result
            answers = await self._ask(ctx, result.output)
            prompt, history = None, result.all_messages()

    async def _ask(self, ctx: Context, requests: DeferredToolRequests) -> DeferredToolResults:
        """One token per call, all made (and listed in the metadata) before the first wait."""
        asked = [(call, "approval") for call in requests.approvals]
        asked += [(call, "external") for call in requests.calls]
        waiting: list[dict[str, Any]] = []
        for call, kind in asked:
            token = await ctx.create_token(timeout=self.approval_timeout,
                                           tags=[*self.approval_tags, f"tool:{call.tool_name}"])
            args = requests.validated_args.get(call.tool_call_id, call.args_as_dict())
            waiting.append({"token": token.id, "tool": call.tool_name, "args": args,
                            "tool_call_id": call.tool_call_id, "kind": kind})
        ctx.metadata[WAITING_KEY] = waiting
        results = DeferredToolResults()
        for entry in waiting:
            token_id, call_id = str(entry["token"]), str(entry["tool_call_id"])
            if entry["kind"] == "approval":
                try:
                    data = await ctx.wait_for_token(token_id)
                except WaitTimeout:
                    results.approvals[call_id] = ToolDenied(TIMED_OUT)
                else:
                    results.approvals[call_id] = approval(data, token_id=token_id,
                                                          tool=str(entry["tool"]))
            else:
                results.calls[call_id] = await ctx.wait_for_token(token_id)
            results.answered_by[call_id] = token_id
        ctx.metadata.pop(WAITING_KEY, None)
        return results

    def _count(self, ctx: Context, result: AgentRunResult[Any]) -> None:
        totals = _usage.setdefault(ctx, {}).setdefault(self.name, {
            "requests": 0, "input_tokens": 0, "output_tokens": 0, "tool_calls": 0,
            "cost_usd": None, "unpriced_requests": 0})
        usage = result.usage
        totals["requests"] += usage.requests
        totals["input_tokens"] += usage.input_tokens
        totals["output_tokens"] += usage.output_tokens
        totals["tool_calls"] += usage.tool_calls
        for message in result.new_messages():
            if isinstance(message, ModelResponse):
                price = _price(message)
                if price is None:
                    totals["unpriced_requests"] += 1
                else:
                    totals["cost_usd"] = round((totals["cost_usd"] or 0.0) + price, 10)
        ctx.metadata[USAGE_KEY] = {**ctx.metadata.get(USAGE_KEY, {}),
                                   **{name: dict(t) for name, t in _usage[ctx].items()}}


def _price(response: ModelResponse) -> float | None:
    """The response's cost in USD: the provider's (a gateway reports it), else genai-prices'
    estimate for a known model; None when neither knows."""
    if response.usage.cost is not None:
        return float(response.usage.cost)
    try:
        return float(response.cost().total_price)
    except (LookupError, ValueError, AssertionError):
        return None


def _as_list(output_type: Any) -> list[Any]:
    if isinstance(output_type, Sequence) and not isinstance(output_type, str):
        return list(output_type)
    return [output_type]


def _includes_deferred(output_type: Any) -> bool:
    return any(t is DeferredToolRequests for t in _as_list(output_type))
