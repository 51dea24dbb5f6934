"""Span trees as comparable values: each span as its label and the sorted labels-trees of its
children, so a test states the expected tree whatever the order spans were exported in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.util._once import Once

Tree = tuple[str, tuple[Any, ...]]


def default_label(name: str, attributes: dict[str, Any]) -> str:
    """A span's name; a run segment's with its attempt and outcome ("run flaky a2 WAITING")."""
    if name.startswith("run "):
        return f"{name} a{attributes.get('tether.attempt')} {attributes.get('tether.outcome')}"
    return name


def build(spans: Sequence[Any], root_id: int,
          label: Callable[[str, dict[str, Any]], str] = default_label,
          ) -> Tree:
    """The tree under the span `root_id`; `spans` are (name, span_id, parent_id, attributes)."""
    by_parent: dict[int | None, list[Any]] = {}
    names: dict[int, tuple[str, dict[str, Any]]] = {}
    for name, span_id, parent_id, attributes in spans:
        by_parent.setdefault(parent_id, []).append(span_id)
        names[span_id] = (name, attributes)

    def node(span_id: int) -> Tree:
        children = tuple(sorted((node(c) for c in by_parent.get(span_id, [])), key=repr))
        return (label(*names[span_id]), children)

    return node(root_id)


def tree(label: str, *children: Tree) -> Tree:
    """An expected node."""
    return (label, tuple(sorted(children, key=repr)))


def reset_tracer_provider() -> None:
    """OpenTelemetry lets a process set its provider once; its own tests reset these globals."""
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
