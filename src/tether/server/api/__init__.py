"""The JSON API: Trigger.dev-compatible routes plus Tether's own."""

from fastapi import APIRouter

from tether.server.api import (
    payloads,
    queue_keys,
    queues,
    runs,
    schedules,
    triggers,
    waitpoints,
    workers,
)

router = APIRouter()

router.include_router(waitpoints.router)
router.include_router(waitpoints.callback_router)
router.include_router(schedules.router)
router.include_router(schedules.public_router)
router.include_router(queues.router)
router.include_router(queue_keys.router)
router.include_router(workers.router)
router.include_router(triggers.router)
router.include_router(runs.router)
router.include_router(payloads.router)
router.include_router(payloads.uploads)
