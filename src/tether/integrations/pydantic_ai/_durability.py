"""TetherDurability: the Pydantic AI capability that makes an agent's model requests and tool
calls Tether steps of the run that executes the agent.

Pydantic AI's durable-execution base owns the agent side (wrapping the model and the toolsets,
naming the operations, reducing values to JSON with its type adapters); Tether's side is one
backend whose durable unit is `ctx.step`, found through `tether.current_context()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast
from weakref import WeakKeyDictionary

from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationBackend,
    DurableOperationId,
    JournalCallableOperationBackend,
    RoleBasedOperationConfig,
    conversation_id_from_run_id,
)
from pydantic_ai.tools import AgentDepsT
from pydantic_ai.toolsets import ToolsetTool

from tether.engine.context import Context
from tether.engine.current import current_context
from tether.engine.waits import Suspend
from tether.errors import ConfigurationError, NoRunContext, SerializationError
from tether.options import Retry

_agent_runs: WeakKeyDictionary[Context, dict[str, int]] = WeakKeyDictionary()
"""How many runs of each agent this attempt started: the agent runs' ids, the same on replay."""


def _not_storable(error: Exception) -> BaseException:
    """A value Pydantic AI cannot reduce to JSON: the run fails at once (another attempt would
    meet the same value), saying which kind of value it is."""
    return SerializationError(f"a value of the agent's step cannot be stored as JSON: {error}")


def _running() -> Context | None:
    try:
        return current_context()
    except NoRunContext:
        return None


class StepOptions(TypedDict, total=False):
    """How one of the agent's operations is stored: `retry` retries it in place (the step's
    `retry`); `once=True` makes it at-most-once (`ctx.once`: after a crash in the middle of the
    call, the run fails with OnceInterrupted instead of calling it again). Per tool:
    `@agent.tool_plain(metadata={"tether": {"once": True}})`; `{"tether": False}` runs an async
    tool in the task itself, not as a step."""

    retry: Retry | None
    once: bool


def step_options(config: Any) -> StepOptions:
    """`config` checked: a dict of StepOptions' keys, or a clear ConfigurationError."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigurationError(f"a tool's 'tether' metadata must be a dict of retry / once, or "
                                 f"False; got {type(config).__name__}")
    unknown = sorted(set(config) - {"retry", "once"})
    if unknown:
        raise ConfigurationError(f"unknown key(s) in a tool's 'tether' metadata: "
                                 f"{', '.join(map(repr, unknown))} (known: 'retry', 'once')")
    retry, once = config.get("retry"), config.get("once", False)
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(f"'retry' in a tool's 'tether' metadata must be a tether.Retry; "
                                 f"got {type(retry).__name__}")
    if not isinstance(once, bool):
        raise ConfigurationError("'once' in a tool's 'tether' metadata must be True or False")
    if once and retry is not None:
        raise ConfigurationError("a tool's 'tether' metadata cannot set both 'once' and 'retry' "
                                 "(an at-most-once call is never called again)")
    return cast(StepOptions, dict(config))


class _StepBackend(JournalCallableOperationBackend[StepOptions]):
    """Each durable operation of the agent (a model request, a tool call, a tool listing) is one
    `ctx.step` (or `ctx.once`) of the current run, named by Pydantic AI's journal convention."""

    async def execute(self, *, operation_id: DurableOperationId, name: str,
                      body: Callable[[], Awaitable[object]], cache_key: tuple[object, ...],
                      config: StepOptions) -> object:
        ctx = current_context()
        if config.get("once"):
            return await ctx.once(name, body)
        return await ctx.step(name, body, retry=config.get("retry"))


class TetherDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent durable inside a Tether run: each model request and each tool call is a step
    of the run, so a run that resumes (after a crash, a retry or a wait) gets their stored results
    instead of paying for them again. Outside a run the agent behaves as without it."""

    engine_spec = DurabilityEngineSpec(
        engine_name="Tether",
        durable_unit_noun="step",
        durable_container_noun="run",
        # steps store JSON: the base reduces every value with Pydantic AI's own type adapters
        codec=JSON_CODEC,
        serialization_failure=_not_storable,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        # steps run in the run's own process and event loop
        toolset_lifecycles={"function": "enter-always", "mcp": "enter-in-durable-unit",
                            "dynamic": "enter-never"},
        journal_discovery=True,
        # a step's place in the run is its position: tools run one after another, in the order
        # the model asked for them, so a replay reaches the steps in the same order
        sequential_tools_in_durable_context=True,
        tool_config_key="tether",
        # the agent graph's waits (between polls of a model's background job) are durable
        # sleeps: past the app's inline_sleep they park the run by raising Suspend
        control_flow_error_types=(Suspend,),
    )

    def __init__(self, *, name: str | None = None, model_retry: Retry | None = None,
                 tool_retry: Retry | None = None) -> None:
        super().__init__(name=name)
        self._model_options: StepOptions = {"retry": model_retry}
        self._tool_options: StepOptions = {"retry": tool_retry}

    @property
    def in_durable_context(self) -> bool:
        return _running() is not None

    def get_default_run_id(self) -> str | None:
        ctx = _running()
        if ctx is None:
            return None
        counts = _agent_runs.setdefault(ctx, {})
        counts[self.name] = n = counts.get(self.name, 0) + 1
        return f"{ctx.run_id}:{self.name}:{n}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        ctx = _running()
        if ctx is None:
            return None
        started = await ctx.step(f"{self.name}__run_start_time",
                                 lambda: datetime.now(UTC).isoformat())
        return datetime.fromisoformat(started)

    async def durable_sleep(self, seconds: float) -> None:
        """A wait of the agent graph (between polls of a model's background job): a durable
        sleep of the run, which parks it (no worker held) once longer than the app's
        `inline_sleep`, and is not waited again by a resumed run."""
        await current_context().sleep(max(seconds, 0.0), name=f"{self.name}__sleep")

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        tool_options = self._build_resolve_tool_config(self._tool_options)

        def resolve_tool(operation_id: DurableOperationId, tool: object | None,
                         tool_name: str) -> StepOptions | Literal[False]:
            resolved = tool_options(cast(ToolsetTool[Any] | None, tool), tool_name)
            return False if resolved is False else step_options(resolved)

        config = RoleBasedOperationConfig[StepOptions](
            model=self._model_options, event={}, capability={}, tool=self._tool_options,
            resolve_tool=resolve_tool)
        return _StepBackend(agent_name=self.name, default_model_id=self.default_model_id,
                            config=config)
