"""The alert settings of `tether serve`: webhook URLs, the signing secret, the queue-wait
threshold. Checked when built, with one-line errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tether.errors import ConfigurationError

DEFAULT_QUEUE_WAIT = 300.0  # seconds the oldest ready run of a queue may wait before an alert
MIN_SECRET_LENGTH = 16


def split_urls(values: list[str] | tuple[str, ...] | str | None) -> list[str]:
    """URLs from repeated options and/or a comma- or space-separated list, in order, once each."""
    if values is None:
        return []
    texts = [values] if isinstance(values, str) else list(values)
    found: list[str] = []
    for text in texts:
        for url in re.split(r"[,\s]+", text.strip()):
            if url and url not in found:
                found.append(url)
    return found


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"alert webhook {url!r} is not an http:// or https:// URL")
    return url


@dataclass(frozen=True)
class AlertConfig:
    """`webhooks`: where alerts go (each alert is POSTed to every one). `secret`: the key of the
    HMAC-SHA256 signature in X-Tether-Signature (the receiver holds the same). `queue_wait`:
    seconds the oldest ready run of a queue may wait before a `queue.backlog` alert.
    `public_url`: the server's address, for dashboard links in alerts."""

    webhooks: tuple[str, ...]
    secret: str
    queue_wait: float = DEFAULT_QUEUE_WAIT
    public_url: str | None = None
    poll_interval: float = 1.0
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for url in self.webhooks:
            check_url(url)
        if self.webhooks and not self.secret:
            raise ConfigurationError(
                "alert webhooks need a signing secret: pass --alert-secret or set "
                "TETHER_ALERT_SECRET (receivers verify X-Tether-Signature with it)")
        if self.webhooks and len(self.secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(f"the alert secret must be at least {MIN_SECRET_LENGTH} "
                                     "characters (e.g. `openssl rand -hex 32`)")
        if self.queue_wait <= 0:
            raise ConfigurationError(f"the alert queue wait must be positive, got "
                                     f"{self.queue_wait:g}")

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks)
