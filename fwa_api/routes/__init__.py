"""One module per resource. To add one, append its router to ``PROTECTED`` (every route then
needs a token, whatever the route itself declares) or, for the rare open route, to ``PUBLIC``."""

from __future__ import annotations

from fastapi import APIRouter

from fwa_api.routes import agents, health, metrics, workspaces

PUBLIC: list[APIRouter] = [health.router, metrics.router, agents.page_router]
PROTECTED: list[APIRouter] = [workspaces.router, agents.router]
