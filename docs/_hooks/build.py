"""MkDocs hooks for the documentation site (mkdocs.yml: `hooks:`).

- The CLI reference (mkdocs-click) imports `tether.cli.main`: this puts the tree's own `src/`
  first on the path, so the site documents the code next to it, whichever `tether` the
  environment has installed (mkdocstrings reads `src/` by itself: `paths: [src]`).
- mkdocs-click copies a command's help into the page as Markdown: click's `\\b` paragraphs
  (examples, kept as typed) lose their line breaks and `<placeholders>` vanish as HTML. The
  hook renders those paragraphs as text blocks and escapes `<`, `>` and `&` elsewhere.
- The run context's reference must cover all of it: every public attribute, property and method
  of `Context` and `SyncContext` needs a docstring, or the build warns (and --strict fails).
"""

from __future__ import annotations

import html
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import griffe
from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("tether-docs")

CONTEXT_MODULE = "tether.engine.context"
CONTEXT_CLASSES = ("Context", "SyncContext")
CODE_SPAN = re.compile(r"(`[^`]*`)")
NO_REWRAP = "\b"  # click: a paragraph whose first line is this is printed as written


def on_config(config: Any) -> Any:
    src = Path(config.config_file_path).resolve().parent / "src"
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    for name in [m for m in sys.modules if m == "tether" or m.startswith("tether.")]:
        del sys.modules[name]  # imported from elsewhere before the path was set
    patch_click_descriptions()
    check_context_docstrings(src)
    return config


# -- the CLI reference ----------------------------------------------------------------------
def help_markdown(text: str) -> Iterator[str]:
    """A click help text as Markdown: `\\b` paragraphs as text blocks, the rest escaped."""
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.splitlines()
        if lines and lines[0].strip() == NO_REWRAP:
            yield "```text"
            yield from lines[1:]
            yield "```"
        else:
            yield from (escape_outside_code(line) for line in lines)
        yield ""


def escape_outside_code(line: str) -> str:
    parts = CODE_SPAN.split(line)
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


def command_description(ctx: click.Context, remove_ascii_art: bool = False) -> Iterator[str]:
    text = ctx.command.help or ctx.command.short_help
    if text:
        yield from help_markdown(text)


def patch_click_descriptions() -> None:
    from mkdocs_click import _docs

    if not callable(getattr(_docs, "_make_description", None)):
        log.warning("mkdocs_click._docs._make_description is gone: update docs/_hooks/build.py "
                    "for this version of mkdocs-click")
        return
    _docs._make_description = command_description


# -- the ctx reference ----------------------------------------------------------------------
def undocumented(src: Path, module: str, classes: tuple[str, ...]) -> list[str]:
    """`Class.member` for each public member (inherited ones included) without a docstring."""
    loaded = griffe.load(module, search_paths=[str(src)])
    missing = []
    for class_name in classes:
        for name, member in loaded[class_name].all_members.items():
            if not name.startswith("_") and not member.docstring:
                missing.append(f"{class_name}.{name}")
    return missing


def check_context_docstrings(src: Path) -> None:
    for name in undocumented(src, CONTEXT_MODULE, CONTEXT_CLASSES):
        log.warning("%s in %s has no docstring: the ctx reference (reference/context.md) "
                    "is generated from them", name, CONTEXT_MODULE)
