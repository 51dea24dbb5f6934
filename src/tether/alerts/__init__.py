"""Alerts: `tether serve` POSTs a signed JSON alert to webhooks when a run fails for good, a
queue's oldest ready run waits too long, or a worker stalls. Each alert is a run of the built-in
task `tether.alert` (queue `tether-alerts`), delivered with retries by a small worker inside
`tether serve`, so an alert survives a restart.

config.py (settings), events.py (bodies, signatures, keys), delivery.py (the task that POSTs),
detector.py (the thread that finds what to alert about), service.py (both, beside the server)."""

from tether.alerts.config import AlertConfig

__all__ = ["AlertConfig"]
