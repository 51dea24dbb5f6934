"""The built-in task `tether.alert`: POST one alert's body to one webhook, signed, retried with
exponential backoff (about an hour in all) until the receiver answers 2xx.

A run's payload names the webhook (a hash of its URL, and the URL shown without its path: URLs
often hold a token), and holds the body (the exact bytes sent, as text) and its signature, never
the secret. Before sending, the task signs the body again with the server's secret and compares:
a payload not made by this server's detector (someone with an API key triggering `tether.alert`
by hand) or made under another secret is not sent (the run fails, without retries); so is one
whose webhook is no longer configured."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import httpx

from tether.alerts.config import AlertConfig
from tether.alerts.events import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
    webhook_id,
)
from tether.engine.context import Context
from tether.errors import AbortRun
from tether.options import Queue, Retry

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

ALERT_TASK = "tether.alert"
ALERT_QUEUE = "tether-alerts"
# 12 attempts, 5 s doubling to at most 15 min between them: about 70 minutes of a receiver down
RETRY = Retry(max_attempts=12, factor=2.0, min_delay=5.0, max_delay=900.0, jitter=True)
TIMEOUT = 10.0  # seconds to connect, send and read the answer
MAX_ANSWER = 1000  # bytes of a refusing receiver's answer kept in the error


class AlertNotDelivered(Exception):
    """The receiver could not be reached or did not answer 2xx: retried."""


async def _answer(response: httpx.Response) -> str:
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= MAX_ANSWER:
            break
    return kept[:MAX_ANSWER].decode("utf-8", "replace").strip()


async def deliver(config: AlertConfig, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
    body, signature, shown = str(payload["body"]).encode(), payload["signature"], payload["url"]
    found = [u for u in config.webhooks if webhook_id(u) == payload.get("webhook")]
    if not found:
        raise AbortRun(f"the webhook {shown} is no longer configured; not sent")
    url = found[0]
    expected = sign(config.secret, body)
    if not hmac.compare_digest(expected.encode(), str(signature).encode()):
        raise AbortRun("the alert's signature does not match this server's alert secret (made "
                       "under another secret, or not by Tether's detector); not sent")
    headers = {"Content-Type": "application/json", "User-Agent": "tether-alerts",
               SIGNATURE_HEADER: expected, EVENT_ID_HEADER: str(payload["eventId"]),
               EVENT_TYPE_HEADER: str(payload["event"]), ATTEMPT_HEADER: str(attempt),
               **config.extra_headers}
    try:
        async with (httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client,
                    client.stream("POST", url, content=body, headers=headers) as response):
            if 200 <= response.status_code < 300:
                return {"url": shown, "status": response.status_code}
            answer = await _answer(response)
    except httpx.HTTPError as exc:
        raise AlertNotDelivered(f"{shown}: {type(exc).__name__}: {exc}") from None
    raise AlertNotDelivered(f"{shown} answered {response.status_code}"
                            + (f": {answer}" if answer else ""))


def register(app: Tether, config: AlertConfig) -> Task[Any, Any]:
    """Define `tether.alert` on `app` (the server's), delivering with `config`."""

    async def alert(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return await deliver(config, payload, ctx.attempt)

    return app.task(id=ALERT_TASK, queue=Queue(ALERT_QUEUE), retry=RETRY, max_duration=60,
                    pin=False)(alert)
