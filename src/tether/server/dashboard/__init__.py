"""The dashboard: server-rendered pages with live updates over server-sent events."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
