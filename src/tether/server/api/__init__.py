"""The JSON API: Trigger.dev-compatible routes plus Tether's own."""

from fastapi import APIRouter

router = APIRouter()
