"""Build the ASGI app: routers, error handlers, and the Tether app they share."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from tether.app import Tether
from tether.errors import ConfigurationError
from tether.server.errors import install_error_handlers
from tether.server.timing import ServerTiming

DEFAULT_MAX_REQUEST_SIZE = 32 * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """`dev`: the dashboard opens without a login for requests from 127.0.0.1 (`tether dev`).
    `public_url`: the address clients reach this server at, used in callback URLs.
    `max_request_size`: the most bytes a request's body may hold (413 beyond). None: 32 MiB,
    or twice the app's `max_payload_size` and 1 MiB if that is more (a payload sent as escaped
    text inside a JSON body can nearly double), so raising the payload limit raises this too."""

    dev: bool = False
    public_url: str = "http://127.0.0.1:8030"
    max_request_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_request_size is None:
            return
        if isinstance(self.max_request_size, bool) or not isinstance(self.max_request_size, int) \
                or self.max_request_size < 1:
            raise ConfigurationError(f"max_request_size must be a number of bytes of at least 1, "
                                     f"not {self.max_request_size!r}")


def request_limit(tether: Tether, config: ServerConfig) -> int:
    """The most bytes a request's body may hold on this server (see ServerConfig)."""
    if config.max_request_size is not None:
        return config.max_request_size
    return max(DEFAULT_MAX_REQUEST_SIZE, 2 * tether.max_payload_size + 1024 * 1024)


def create_app(tether: Tether, config: ServerConfig | None = None) -> FastAPI:
    from tether.server.api import router as api_router
    from tether.server.dashboard import router as dashboard_router
    from tether.server.guard import RequestGuard
    from tether.server.head import HeadAsGet
    from tether.server.metrics import router as metrics_router
    from tether.server.metrics import watch as watch_metrics

    api = FastAPI(title="Tether", version="0.1.0",
                  description="Durable background tasks for Python. The routes under /api follow "
                              "Trigger.dev's management API.",
                  docs_url="/api/docs", redoc_url=None)
    api.state.tether = tether
    api.state.config = config = config or ServerConfig()
    install_error_handlers(api)
    # HEAD is routed as GET, without the body (inside the guard, which checks it as a read)
    api.add_middleware(HeadAsGet)
    # the guard sees every request first (after the timing starts): no route can be reached, nor
    # a body read, before the key, signature or session is checked
    api.add_middleware(RequestGuard, tether=tether,
                       max_request_size=request_limit(tether, config))
    api.add_middleware(ServerTiming)
    api.include_router(api_router)
    api.include_router(dashboard_router)
    api.include_router(metrics_router)
    watch_metrics(tether)
    return api
