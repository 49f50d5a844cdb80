"""One module per resource. To add one, append its router to ``PROTECTED`` (every route then
needs a token, whatever the route itself declares) or, for the rare open route, to ``PUBLIC``."""

from __future__ import annotations

from fastapi import APIRouter

from fwa_api.pipeline import routes as pipeline
from fwa_api.routes import (
    agents,
    cases,
    claims,
    health,
    members,
    metrics,
    providers,
    rules,
    uploads,
    workspace_config,
    workspaces,
)

PUBLIC: list[APIRouter] = [health.router, metrics.router, agents.page_router]
PROTECTED: list[APIRouter] = [
    workspaces.router,
    workspace_config.router,
    agents.router,
    cases.router,
    rules.router,
    providers.router,
    claims.router,
    members.router,
    uploads.router,
    pipeline.router,
]
