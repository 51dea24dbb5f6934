"""A durable support agent (Pydantic AI) that runs offline: its model is a FunctionModel that
plays the part of an LLM, so no API key or network is needed. Swap in a real model
(`Agent("openai:gpt-4o", ...)`) and nothing else changes.

    tether dev examples/agent_tasks.py
    tether trigger support '{"order": "A-1001", "question": "Where is my order? Refund it."}'

The agent looks the order up (a tool: a step of the run), then asks to refund it, which needs a
person's approval: the run waits on a token (the dashboard's run page lists it in the metadata
under `agent.waiting`). Approve it from another terminal:

    tether tokens complete <token id> '{"approved": true}'
    tether tokens complete <token id> '{"approved": false, "message": "refund only half"}'

Kill the worker while it runs and start it again: the model requests and tool calls already made
come back from the run's steps, not from the model.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether import Context, Tether
from tether.integrations.pydantic_ai import TetherAgent

app = Tether()

ORDERS = {"A-1001": {"status": "delayed at the depot", "total": 42.0}}


def pretend_llm(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """What a model would do here: look the order up, ask to refund it, then answer."""
    results = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if not results:
        return ModelResponse(parts=[ToolCallPart("look_up_order", {"order": "A-1001"})])
    if len(results) == 1:
        return ModelResponse(parts=[ToolCallPart("refund", {"order": "A-1001", "amount": 42.0})])
    order, refund = results[0].content, results[1].content
    return ModelResponse(parts=[TextPart(f"Your order is {order['status']}. {refund}")])


support = Agent(FunctionModel(pretend_llm), name="support",
                instructions="You help customers with their orders.")


@support.tool_plain
def look_up_order(order: str) -> dict[str, Any]:
    """The order's status and total."""
    return ORDERS.get(order, {"status": "unknown", "total": 0.0})


@support.tool_plain(requires_approval=True)
def refund(order: str, amount: float) -> str:
    """Refund `amount` on `order` (a person approves it first)."""
    return f"Refunded {amount:.2f} on {order}." if amount > 0 else "Nothing was refunded."


durable_support = TetherAgent(support, approval_timeout="1d")


@app.task(id="support")
async def answer(payload: dict[str, str], ctx: Context) -> str:
    result = await durable_support.run(f"Order {payload['order']}: {payload['question']}")
    return str(result.output)
