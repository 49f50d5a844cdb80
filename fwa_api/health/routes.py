"""``GET /api/health``: what the app's ``HealthChecker`` reports (``fwa_api.health.checker``); no
token needed. 200 when healthy or degraded, 503 when unhealthy (the database is down)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fwa_api.services import services

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(request: Request) -> JSONResponse:
    app = services(request)
    status_code, body = await app.health.report(app)
    return JSONResponse(body, status_code=status_code)
