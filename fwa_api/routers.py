"""Every router of the API, one package per resource. To add one, append its router to
``PROTECTED`` (every route then needs a token, whatever the route itself declares) or, for the
rare open route, to ``PUBLIC``."""

from __future__ import annotations

from fastapi import APIRouter

from fwa_api.agents import routes as agents
from fwa_api.cases import routes as cases
from fwa_api.claims import routes as claims
from fwa_api.health import routes as health
from fwa_api.members import routes as members
from fwa_api.metrics import routes as metrics
from fwa_api.pipeline import routes as pipeline
from fwa_api.providers import routes as providers
from fwa_api.rules import routes as rules
from fwa_api.signin import routes as signin
from fwa_api.uploads import routes as uploads
from fwa_api.workspaces import config_routes as workspace_config
from fwa_api.workspaces import routes as workspaces

PUBLIC: list[APIRouter] = [health.router, metrics.router, agents.page_router]
PROTECTED: list[APIRouter] = [
    signin.router,
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
