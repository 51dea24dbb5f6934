"""Fixtures of the browser tests; they live in browser_support.py, which the tests import from
(a module named `conftest` is ambiguous when several test folders are collected together)."""

from browser_support import browser, dash, logged_in, page

__all__ = ["browser", "dash", "logged_in", "page"]
