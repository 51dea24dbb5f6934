"""The Celery app peer_celery.py's worker process loads (`celery -A peer_celery_app worker`)."""

from __future__ import annotations

import os

from peer_celery import make_app

app = make_app(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
