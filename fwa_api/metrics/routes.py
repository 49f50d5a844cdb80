"""``GET /metrics``: Prometheus text format, outside ``/api`` and without a token (nginx keeps it
off the public side): the HTTP metrics (``fwa_api.middleware.metrics``) and the store's
(``fwa_api.metrics.collector``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fwa_api.services import services

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain def: FastAPI runs it in a worker thread, so the store query cannot block the loop.
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
