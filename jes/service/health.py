"""``/health`` (alive), ``/ready`` (registered and polling) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jes.service.metrics import Metrics
from jes.util.asgiserver import AsgiServer

logger = logging.getLogger(__name__)


def app(*, problems: Callable[[], list[str]], metrics: Metrics) -> Starlette:
    """``problems()`` lists why jes is not ready (empty: ready); ``/ready`` answers them."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "OK"})

    async def readiness(request: Request) -> Response:
        found = problems()
        metrics.ready.set(0 if found else 1)
        if not found:
            return JSONResponse({"status": "OK"})
        return JSONResponse({"status": "not ready: " + "; ".join(found), "problems": found}, status_code=503)

    async def exposition(request: Request) -> Response:
        metrics.ready.set(0 if problems() else 1)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[Route("/health", health), Route("/ready", readiness), Route("/metrics", exposition)],
    )


class HealthServer(AsgiServer):
    """uvicorn serving :func:`app` inside the service's event loop; a taken port is a
    :class:`jes.errors.JesError` naming ``HEALTH_ENDPOINT_PORT``."""

    def __init__(self, application: Starlette, *, host: str = "0.0.0.0", port: int = 8080) -> None:
        super().__init__(application, host=host, port=port, setting="HEALTH_ENDPOINT_PORT", name="jes-health-server")
