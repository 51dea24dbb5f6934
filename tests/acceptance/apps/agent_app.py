"""A Pydantic AI agent run durably by a worker the test kills (offline: a FunctionModel).

`research` asks for `lookup` three times, one call per model response, then answers. Each model
request appends a line to `model_calls.log` and each tool call one to `executions.log` (beside this
file); the third tool call blocks until the file `release` exists, so the test can SIGKILL the
worker in the middle of it. `refund` needs a person's approval: its run waits on a token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether import Context, Retry, Tether
from tether.integrations.pydantic_ai import TetherAgent

HERE = Path(__file__).parent
MODEL_CALLS = HERE / "model_calls.log"
EXECUTIONS = HERE / "executions.log"
RELEASE = HERE / "release"

app = Tether(lease_seconds=2)
FAST_RETRY = Retry(max_attempts=3, min_delay=0.1, max_delay=0.1, jitter=False)


def record(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]


def researcher(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = returns(messages)
    record(MODEL_CALLS, f"request {len(done) + 1}")
    if len(done) < 3:
        return ModelResponse(parts=[ToolCallPart("lookup", {"n": len(done) + 1})])
    return ModelResponse(parts=[TextPart(" + ".join(str(r.content) for r in done))])


research_agent = Agent(FunctionModel(researcher), name="research")


@research_agent.tool_plain
async def lookup(n: int) -> str:
    record(EXECUTIONS, f"lookup {n}")
    # bounded: the test kills the worker or creates `release` well within this
    for _ in range(3000):
        if n != 3 or RELEASE.exists():
            break
        await asyncio.sleep(0.01)
    return f"fact {n}"


durable_research = TetherAgent(research_agent)


def cashier(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = returns(messages)
    if done:
        return ModelResponse(parts=[TextPart(f"refund: {done[0].content}")])
    return ModelResponse(parts=[ToolCallPart("refund", {"amount": 30})])


refund_agent = Agent(FunctionModel(cashier), name="refunds")


@refund_agent.tool_plain(requires_approval=True)
def refund(amount: int) -> str:
    record(EXECUTIONS, f"refund {amount}")
    return f"refunded {amount}"


durable_refunds = TetherAgent(refund_agent)


@app.task(id="research", retry=FAST_RETRY)
async def research(payload: str, ctx: Context) -> dict[str, object]:
    result = await durable_research.run(payload)
    return {"answer": result.output, "attempt": ctx.attempt}


@app.task(id="refund")
async def refund_task(payload: str, ctx: Context) -> str:
    result = await durable_refunds.run(payload)
    return str(result.output)


def treasurer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = returns(messages)
    record(MODEL_CALLS, f"treasurer {len(done) + 1}")
    if done:
        return ModelResponse(parts=[TextPart(str(done[0].content))])
    return ModelResponse(parts=[ToolCallPart("transfer", {"amount": 100})])


payout_agent = Agent(FunctionModel(treasurer), name="payouts")


@payout_agent.tool_plain(metadata={"tether": {"once": True}})
async def transfer(amount: int) -> str:
    record(EXECUTIONS, f"transfer {amount}")
    for _ in range(3000):  # bounded: the test kills the worker well within this
        if RELEASE.exists():
            break
        await asyncio.sleep(0.01)
    return f"sent {amount}"


durable_payouts = TetherAgent(payout_agent)


@app.task(id="payout", retry=FAST_RETRY)
async def payout(payload: str) -> str:
    return str((await durable_payouts.run(payload)).output)
