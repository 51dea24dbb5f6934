"""What an alert says and how it is signed. Pure functions: no storage, no network.

An event is {"type", "id", "createdAt", "summary", "data": {...}}, encoded once (the bytes that
are stored, signed and sent). Its id is derived from what it is about (the run and its attempt
count, the queue and the episode, the worker and when it stalled), so the same event seen twice
has one id, and one idempotency key per webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tether.storage.records import WorkerRecord

RUN_FAILED = "run.failed"
QUEUE_BACKLOG = "queue.backlog"
WORKER_STALLED = "worker.stalled"
TYPES = (RUN_FAILED, QUEUE_BACKLOG, WORKER_STALLED)

SIGNATURE_HEADER = "X-Tether-Signature"
EVENT_ID_HEADER = "X-Tether-Event-Id"
EVENT_TYPE_HEADER = "X-Tether-Event"
ATTEMPT_HEADER = "X-Tether-Delivery-Attempt"
MAX_ERROR_MESSAGE = 2000  # characters of a run's error message an alert carries


def iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(subject: str) -> str:
    """A stable id for the event about `subject` (e.g. "run.failed:run_x:3")."""
    return "alert_" + hashlib.sha256(subject.encode()).hexdigest()[:26]


def webhook_id(url: str) -> str:
    """How a stored alert names its webhook: URLs often hold a token (chat and paging services
    put one in the path), so runs, logs and the dashboard never show more than `shown(url)`."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def shown(url: str) -> str:
    """The URL without what may be secret: scheme and host, "/…" for the rest."""
    parts = urlsplit(url)
    rest = url[len(f"{parts.scheme}://{parts.netloc}"):]
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" + ("/…" if rest.strip("/") else "")


def url_key(event: str, url: str) -> str:
    """The idempotency key of one event's delivery to one webhook."""
    return f"alert:{event}:{webhook_id(url)}"


def sign(secret: str, body: bytes) -> str:
    """The X-Tether-Signature header's value: "sha256=" and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (in any language): compute the HMAC of the raw body and compare in
    constant time."""
    return hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))


def encode(kind: str, subject: str, now: float, summary: str, data: dict[str, Any]) -> bytes:
    event = {"type": kind, "id": event_id(subject), "createdAt": iso(now), "summary": summary,
             "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def run_failed(run: Any, now: float, public_url: str | None) -> tuple[str, bytes]:
    """(subject, body) for a run that ended FAILED or TIMED_OUT."""
    error = json.loads(run.error) if run.error else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    data: dict[str, Any] = {
        "runId": run.id, "task": run.task_id, "queue": run.queue, "status": str(run.status),
        "attempts": run.attempts,
        "error": {"type": error.get("type") if isinstance(error, dict) else None,
                  "message": message[:MAX_ERROR_MESSAGE]},
        "finishedAt": iso(run.finished_at) if run.finished_at else None,
        "dashboardUrl": f"{public_url}/runs/{run.id}" if public_url else None,
    }
    subject = f"{RUN_FAILED}:{run.id}:{run.attempts}"
    summary = f"run {run.id} of task {run.task_id} {str(run.status).lower().replace('_', ' ')}"
    summary += f" after {run.attempts} attempt(s): {message[:200]}" if message else ""
    return subject, encode(RUN_FAILED, subject, now, summary, data)


def queue_backlog(queue: str, oldest_ready_at: float, episode: str, threshold: float,
                  now: float, public_url: str | None) -> tuple[str, bytes]:
    waited = max(0.0, now - oldest_ready_at)
    data = {"queue": queue, "oldestReadySeconds": round(waited, 3),
            "oldestReadySince": iso(oldest_ready_at), "thresholdSeconds": threshold,
            "dashboardUrl": f"{public_url}/queues" if public_url else None}
    subject = f"{QUEUE_BACKLOG}:{queue}:{episode}"
    summary = (f"queue {queue}: its oldest ready run has waited {waited:.0f}s "
               f"(threshold {threshold:g}s)")
    return subject, encode(QUEUE_BACKLOG, subject, now, summary, data)


def worker_stalled(worker: WorkerRecord, stalled_since: float,
                   now: float) -> tuple[str, bytes]:
    data = {"workerId": worker.id, "host": worker.hostname, "pid": worker.pid,
            "stalledSince": iso(stalled_since), "lastSeenAt": iso(worker.last_seen_at),
            "version": worker.version, "stalls": worker.stalls, "running": worker.running}
    subject = f"{WORKER_STALLED}:{worker.id}:{stalled_since!r}"
    summary = (f"worker {worker.id} (pid {worker.pid} on {worker.hostname}) stalled since "
               f"{iso(stalled_since)}")
    return subject, encode(WORKER_STALLED, subject, now, summary, data)
