"""Durable Pydantic AI agents: `TetherAgent(agent)` runs an agent inside a Tether task so that
each model request and each tool call is a step of the run (a crash resumes without paying for
completed model calls again), tools that need a person wait on tokens, and the usage goes into
the run's metadata. Install with the `pydantic-ai` extra: `pip install "tether[pydantic-ai]"`.
"""

try:
    import pydantic_ai  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "tether.integrations.pydantic_ai needs Pydantic AI: pip install 'tether[pydantic-ai]' "
        "(or pydantic-ai-slim)") from error

from tether.integrations.pydantic_ai._agent import TIMED_OUT, USAGE_KEY, WAITING_KEY, TetherAgent
from tether.integrations.pydantic_ai._answers import BadAnswer
from tether.integrations.pydantic_ai._durability import StepOptions, TetherDurability

__all__ = ["TIMED_OUT", "USAGE_KEY", "WAITING_KEY", "BadAnswer", "StepOptions", "TetherAgent",
           "TetherDurability"]
