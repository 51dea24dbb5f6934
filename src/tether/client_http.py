"""The transport under `tether.Client`: one httpx client, bearer auth, bounded retries, and the
HTTP API's `{"error": "..."}` answers turned into Tether's exceptions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tether.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidTransition,
    PayloadError,
    PayloadTooLarge,
    QueueFull,
    RequestFailed,
    ServerUnavailable,
    TetherError,
)

if TYPE_CHECKING:  # httpx is imported by the first Transport: `import tether` (every worker,
    import httpx  # every CLI command) does not pay for it

ErrorFactory = Callable[[str], TetherError]
ErrorMap = Mapping[int, ErrorFactory]

RETRY_STATUSES = frozenset({429, 502, 503, 504})  # worth another try; 500 is a bug, not a blip
RETRY_DELAY = 0.25  # seconds before the first retry, doubled for each next one
IDEMPOTENCY_HEADER = "x-trigger-request-idempotency-key"  # the server answers a repeat the same


def unprocessable(message: str) -> TetherError:
    """A 422: the payload did not validate, or an option or setting is invalid."""
    return PayloadError(message) if "payload" in message.lower() else ConfigurationError(message)


def unavailable(status: int) -> ErrorFactory:
    return lambda message: ServerUnavailable(f"the Tether server answered {status}: {message}")


def unauthorized(message: str) -> TetherError:
    return AuthenticationError(f"the Tether server refused the API key: {message}")


DEFAULT_ERRORS: dict[int, ErrorFactory] = {
    400: ConfigurationError,
    401: unauthorized,
    403: unauthorized,
    409: InvalidTransition,
    413: PayloadTooLarge,
    429: QueueFull,  # (after the retries: the queue stayed at its max_queued)
    422: unprocessable,
    **{status: unavailable(status) for status in (502, 503, 504)},
}


def error_message(response: httpx.Response) -> str:
    """The server's `{"error": ...}` message, or what else the answer says."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.text.strip()[:500] or response.reason_phrase


def error_for(response: httpx.Response, errors: ErrorMap | None) -> TetherError:
    status, message = response.status_code, error_message(response)
    factory = (errors or {}).get(status) or DEFAULT_ERRORS.get(status)
    return factory(message) if factory else RequestFailed(status, message)


class Transport:
    """Requests to one Tether server. POSTs carry a request idempotency key that is reused by
    the retries, so a retried trigger cannot create a second run."""

    def __init__(self, url: str, api_key: str, *, timeout: float, retries: int,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the server URL must start with http:// or https://, got {url!r}")
        if not api_key:
            raise ConfigurationError("an API key is required (create one with: tether keys create)")
        import httpx

        self.url = url.rstrip("/")
        self.retries = max(0, retries)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}",
                                           "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, content: str | None = None,
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                errors: ErrorMap | None = None) -> Any:
        """The decoded JSON answer; a TetherError for an error answer or an unreachable server."""
        import httpx

        sent = dict(headers or {})
        if method != "GET":
            sent[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, json=json, content=content,
                                              params=params, headers=sent)
            except httpx.TransportError as exc:
                failure: TetherError = ServerUnavailable(
                    f"cannot reach the Tether server at {self.url}: {exc or type(exc).__name__}")
            else:
                if response.is_success:
                    return response.json() if response.content else None
                failure = error_for(response, errors)
                if response.status_code not in RETRY_STATUSES:
                    raise failure
            if attempt == self.retries:
                raise failure
            time.sleep(RETRY_DELAY * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover
