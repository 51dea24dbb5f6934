"""GET /metrics: this server process's metrics in Prometheus' text format, behind the request
guard's bearer key like the API. Creating the app turns the process's metrics on and reports the
queue depths of its database; with `tether dev` the in-process worker's instruments are there too."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from tether.app import Tether
from tether.observe.metrics import CONTENT_TYPE, enable

PATH = "/metrics"

router = APIRouter()


def watch(tether: Tether) -> None:
    """Turn the metrics on for this process and read queue depths from `tether`'s database."""
    enable().watch_database(tether)


@router.get(PATH, include_in_schema=False)
def metrics() -> Response:
    # a plain def: FastAPI runs it on a thread, as the queue depths are read from the database
    return Response(enable().exposition(), media_type=CONTENT_TYPE)
