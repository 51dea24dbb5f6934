"""Durable Pydantic AI agents in process, on each backend (offline: FunctionModel / TestModel):
model requests and tool calls are steps restored exactly on replay, approvals and deferred calls
wait on tokens, usage (and cost when priced) goes into the run's metadata."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain

from tether import (
    ConfigurationError,
    Context,
    ManualClock,
    NoRunContext,
    Retry,
    RunStatus,
    Tether,
    Worker,
)

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent, CallDeferred
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from tether.integrations.pydantic_ai import (
    TIMED_OUT,
    USAGE_KEY,
    WAITING_KEY,
    TetherAgent,
    TetherDurability,
)

RETRY = Retry(max_attempts=2, min_delay=0, max_delay=0, jitter=False)


def tool_results(messages: list[ModelMessage]) -> list[Any]:
    return [p.content for m in messages for p in m.parts
            if isinstance(p, ToolReturnPart | RetryPromptPart)]


def counting_model(responses: list[ModelResponse]) -> FunctionModel:
    """Asks for `add` twice (each request priced as a gateway reports it), then answers with
    the tool results; each response kept."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = tool_results(messages)
        if len(done) < 2:
            response = ModelResponse(parts=[ToolCallPart("add", {"a": len(done), "b": 10})],
                                     usage=RequestUsage(input_tokens=100, output_tokens=10,
                                                        cost=Decimal("0.25")))
        else:
            response = ModelResponse(parts=[TextPart(f"sums {done}")],
                                     usage=RequestUsage(input_tokens=200, output_tokens=20))
        responses.append(response)
        return response

    return FunctionModel(respond)


def test_a_retried_run_replays_stored_model_responses_and_tool_results_exactly(
        app: Tether) -> None:
    made: list[ModelResponse] = []
    tool_calls: list[tuple[int, int]] = []
    agent = Agent(counting_model(made), name="adder")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        tool_calls.append((a, b))
        return a + b

    durable = TetherAgent(agent)
    seen: dict[int, list[ModelMessage]] = {}

    @app.task(retry=RETRY)
    async def sums(payload: str, ctx: Context) -> str:
        result = await durable.run(payload)
        seen[ctx.attempt] = result.all_messages()
        if ctx.attempt == 1:
            raise RuntimeError("after the agent: the next attempt replays it")
        return str(result.output)

    handle = sums.trigger("add things")
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == "sums [10, 11]"
    assert attempt_outcomes(app, handle.id) == ["FAILED", "COMPLETED"]
    assert len(made) == 3 and tool_calls == [(0, 10), (1, 10)]  # none made again
    first = [m for m in seen[1] if isinstance(m, ModelResponse)]
    again = [m for m in seen[2] if isinstance(m, ModelResponse)]
    assert len(first) == 3 and again == first  # restored exactly, not just their text
    stored = app.storage.load_steps(handle.id).values()
    steps = [row.key for row in sorted(stored, key=lambda row: row.seq or 0)]
    call = "adder__function_toolset__<agent>.call_tool:add"
    assert steps == ["adder__model.request", call, "adder__model.request#2", f"{call}#2",
                     "adder__model.request#3"]
    usage = run.metadata[USAGE_KEY]["adder"]
    assert {k: usage[k] for k in ("requests", "input_tokens", "output_tokens", "tool_calls",
                                  "unpriced_requests")} == {
        "requests": 3, "input_tokens": 400, "output_tokens": 40, "tool_calls": 2,
        "unpriced_requests": 1}  # the answer's cost is not known (a FunctionModel has no price)
    assert usage["cost_usd"] == pytest.approx(0.5)  # the two the provider reported


def approval_model() -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = tool_results(messages)
        if done:
            return ModelResponse(parts=[TextPart(f"outcome: {done[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"amount": 30}),
                                    ToolCallPart("ask_warehouse", {"sku": "A1"})])
    return FunctionModel(respond)


def test_approvals_and_deferred_calls_wait_on_tokens_and_go_on_with_the_answers(
        app: Tether) -> None:
    refunded: list[int] = []
    agent = Agent(approval_model(), name="cashier")

    @agent.tool_plain(requires_approval=True)
    def refund(amount: int) -> str:
        refunded.append(amount)
        return f"refunded {amount}"

    @agent.tool_plain
    def ask_warehouse(sku: str) -> str:
        raise CallDeferred

    durable = TetherAgent(agent, approval_tags=["support"])

    @app.task
    async def serve(payload: str, ctx: Context) -> list[str]:
        result = await durable.run(payload)
        return [str(result.output), *map(str, tool_results(result.all_messages()))]

    handle = serve.trigger("refund please")
    worker = Worker(app)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.WAITING
    approve, external = run.metadata[WAITING_KEY]
    assert (approve["tool"], approve["args"], approve["kind"]) == ("refund", {"amount": 30},
                                                                    "approval")
    assert (external["tool"], external["args"], external["kind"]) == ("ask_warehouse",
                                                                      {"sku": "A1"}, "external")
    assert app.tokens.retrieve(approve["token"]).tags == ["support", "tool:refund"]
    assert refunded == []
    # `tether check` replays the waiting run's agent from its steps (current_context() included)
    [checked] = app.check_replay().runs
    assert (checked.run_id, checked.verdict) == (handle.id, "ok"), checked.detail

    app.tokens.complete(approve["token"], {"approved": False, "message": "over the limit"})
    drain(worker)
    assert app.runs.retrieve(handle.id).status == RunStatus.WAITING  # the second token
    app.tokens.complete(external["token"], {"in_stock": 3})
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert refunded == []  # denied: never called
    assert run.output[1:] == ["over the limit", "{'in_stock': 3}"]
    assert WAITING_KEY not in run.metadata
    assert run.metadata[USAGE_KEY]["cashier"]["requests"] == 2


def test_an_approval_answered_with_nonsense_fails_the_run_without_retrying(app: Tether) -> None:
    agent = Agent(approval_model(), name="cashier")

    @agent.tool_plain(requires_approval=True)
    def refund(amount: int) -> str:
        return "refunded"

    @agent.tool_plain(requires_approval=True)
    def ask_warehouse(sku: str) -> str:
        return "asked"

    durable = TetherAgent(agent)

    @app.task(retry=RETRY)
    async def serve(payload: str) -> str:
        return str((await durable.run(payload)).output)

    handle = serve.trigger("refund please")
    worker = Worker(app)
    drain(worker)
    token = app.runs.retrieve(handle.id).metadata[WAITING_KEY][0]["token"]
    app.tokens.complete(token, "sure")
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert f"token {token} (approval of tool 'refund') was completed with a value of type " \
           "string" in run.error["message"]
    assert run.attempts == 1


def test_a_test_model_agent_and_an_agent_built_with_the_capability(app: Tether) -> None:
    plain = Agent(TestModel(), name="weather")

    @plain.tool_plain
    def forecast(city: str) -> str:
        return "sunny"

    built = Agent(TestModel(custom_output_text="hello"), name="greeter",
                  capabilities=[TetherDurability()])

    @app.task
    async def both(payload: None) -> list[str]:
        first = await TetherAgent(plain).run("weather?")
        second = await built.run("hi")
        return [str(first.output), str(second.output)]

    handle = both.trigger()
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.output == ['{"forecast":"sunny"}', "hello"]
    steps = [e.name for e in app.runs.trace(handle.id) if e.kind == "step"]
    assert "weather__function_toolset__<agent>.call_tool:forecast" in steps
    assert "greeter__model.request" in steps
    # outside a run the capability stays out of the way
    assert asyncio.run(built.run("hi")).output == "hello"


def test_clear_errors_for_misuse() -> None:
    with pytest.raises(ConfigurationError, match="TetherAgent needs a name"):
        TetherAgent(Agent(TestModel()))
    with pytest.raises(ConfigurationError, match="already has a TetherDurability"):
        TetherAgent(Agent(TestModel(), name="x", capabilities=[TetherDurability()]))
    durable = TetherAgent(Agent(TestModel(), name="x"))
    with pytest.raises(NoRunContext, match="outside a run"):
        asyncio.run(durable.run("hi"))


def two_tool_model(first: str, second: str) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = tool_results(messages)
        if not done:
            return ModelResponse(parts=[ToolCallPart(first, {"x": 1})])
        if len(done) == 1:
            return ModelResponse(parts=[ToolCallPart(second, {"x": 2})])
        return ModelResponse(parts=[TextPart(f"{done}")])
    return FunctionModel(respond)


def test_per_tool_options_retry_in_place_and_running_outside_a_step(app: Tether) -> None:
    calls: list[str] = []
    agent = Agent(two_tool_model("flaky", "inline"), name="tools")

    @agent.tool_plain(metadata={"tether": {"retry": Retry(max_attempts=3, min_delay=0,
                                                          max_delay=0, jitter=False)}})
    def flaky(x: int) -> int:
        calls.append("flaky")
        if calls.count("flaky") < 3:
            raise ConnectionError("try again")
        return x

    @agent.tool_plain(metadata={"tether": False})
    async def inline(x: int) -> int:
        calls.append("inline")
        return x * 10

    @app.task(retry=Retry(max_attempts=1))
    async def use(payload: None) -> str:
        return str((await TetherAgent(agent).run("go")).output)

    handle = use.trigger()
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == "[1, 20]" and calls == ["flaky", "flaky", "flaky", "inline"]
    keys = set(app.storage.load_steps(handle.id))
    assert "tools__function_toolset__<agent>.call_tool:flaky" in keys
    assert not any(key.endswith(":inline") for key in keys)  # ran in the task, not as a step


def test_an_at_most_once_tool_is_stored_as_once(app: Tether) -> None:
    agent = Agent(two_tool_model("charge", "charge"), name="payments")

    @agent.tool_plain(metadata={"tether": {"once": True}})
    def charge(x: int) -> str:
        return f"charged {x}"

    @app.task
    async def pay(payload: None) -> str:
        return str((await TetherAgent(agent).run("go")).output)

    handle = pay.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == "['charged 1', 'charged 2']"
    kinds = {row.key: row.kind for row in app.storage.load_steps(handle.id).values()}
    call = "payments__function_toolset__<agent>.call_tool:charge"
    assert kinds[call] == kinds[f"{call}#2"] == "once"
    assert kinds["payments__model.request"] == "step"


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": 2}, "unknown key(s) in a tool's 'tether' metadata: 'retries'"),
    ({"retry": 3}, "'retry' in a tool's 'tether' metadata must be a tether.Retry; got int"),
    ({"once": "yes"}, "'once' in a tool's 'tether' metadata must be True or False"),
    ({"once": True, "retry": Retry()}, "cannot set both 'once' and 'retry'"),
])
def test_bad_tool_options_fail_the_run_with_a_clear_message(app: Tether, options: dict[str, Any],
                                                             message: str) -> None:
    agent = Agent(two_tool_model("tool", "tool"), name="bad")

    @agent.tool_plain(metadata={"tether": options})
    def tool(x: int) -> int:
        return x

    @app.task(retry=Retry(max_attempts=1))
    async def use(payload: None) -> str:
        return str((await TetherAgent(agent).run("go")).output)

    handle = use.trigger()
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and message in run.error["message"]
    assert run.error["type"] == "tether.errors.ConfigurationError"


def test_the_agent_graph_sleeps_durably(app: Tether, clock: ManualClock) -> None:
    durability = TetherDurability[None](name="poller")

    @app.task
    async def waits(payload: None) -> str:
        await durability.durable_sleep(3600)
        return "woke"

    handle = waits.trigger()
    worker = Worker(app)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.WAITING  # parked: no worker held for an hour
    clock.advance(3601)
    drain(worker)
    assert app.runs.retrieve(handle.id).output == "woke"
    assert [row.key for row in app.storage.load_steps(handle.id).values()] == ["poller__sleep"]


def test_the_example_support_agent(app: Tether) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "agent_tasks.py"
    spec = importlib.util.spec_from_file_location("agent_tasks_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app.tasks["support"] = example.answer  # the example's task, on this test's database
    handle = app.trigger("support", {"order": "A-1001", "question": "Refund it."})
    worker = Worker(app)
    drain(worker)
    [asked] = app.runs.retrieve(handle.id).metadata[WAITING_KEY]
    assert asked["args"] == {"order": "A-1001", "amount": 42.0}
    app.tokens.complete(asked["token"], {"approved": True})
    drain(worker)
    assert app.runs.retrieve(handle.id).output == (
        "Your order is delayed at the depot. Refunded 42.00 on A-1001.")


def test_an_approval_not_answered_in_time_counts_as_denied(app: Tether,
                                                           clock: ManualClock) -> None:
    refunded: list[int] = []
    agent = Agent(approval_model(), name="cashier")

    @agent.tool_plain(requires_approval=True)
    def refund(amount: int) -> str:
        refunded.append(amount)
        return "refunded"

    @agent.tool_plain(requires_approval=True)
    def ask_warehouse(sku: str) -> str:
        return "asked"

    durable = TetherAgent(agent, approval_timeout="1h")

    @app.task
    async def serve(payload: str) -> str:
        return str((await durable.run(payload)).output)

    handle = serve.trigger("refund please")
    worker = Worker(app)
    drain(worker)
    _, second = app.runs.retrieve(handle.id).metadata[WAITING_KEY]
    app.tokens.complete(second["token"], True)  # the other call was answered; this one never
    clock.advance(3601)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == f"outcome: {TIMED_OUT}"
    assert refunded == []


def test_a_tool_result_that_is_not_json_fails_the_run_at_once(app: Tether) -> None:
    agent = Agent(two_tool_model("opens", "opens"), name="files")

    @agent.tool_plain
    def opens(x: int) -> object:
        return object()

    @app.task(retry=RETRY)
    async def use(payload: None) -> str:
        return str((await TetherAgent(agent).run("go")).output)

    handle = use.trigger()
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 1  # not retried: it would recur
    assert run.error is not None and run.error["type"] == "tether.errors.SerializationError"
    assert "a value of the agent's step cannot be stored as JSON" in run.error["message"]
