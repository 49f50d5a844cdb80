"""Schemathesis over the app's own OpenAPI schema: generated requests (valid and invalid) to every
documented operation, authenticated as an admin of a workspace with real pipeline results, never
get a 5xx or a response that breaks the schema.

The app runs whole (middleware, PostgreSQL, Redis) in a real uvicorn server. Streaming and
waiting operations are left out: their bodies are event streams, and ``run-full`` blocks until a
run that no daemon here will start.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from fwa_api.app import create_app
from fwa_api.auth import create_token
from fwa_pipeline.defs.launch import run_pipeline
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import engine_for
from fwa_pipeline.synth import generate
from tests.agents.fake_llm import ServerThread
from tests.api.conftest import SHARED_REDIS, free_port
from tests.conftest import make_key, truncate_all

# One worker runs them all (``--dist loadgroup``): the seeded server is built once per module.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.xdist_group("openapi_fuzz"),
]

WORKSPACE = "fuzz"
# The synthetic data's anchor date: the demo's runs are "as of" it.
AS_OF = dt.date(2026, 6, 30)
SKIPPED = r"stream$|/run-full$"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@dataclass(frozen=True)
class Served:
    url: str
    token: str


@pytest.fixture(scope="module")
def served(pg_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A workspace with a scored demo batch, an admin token for it, and the app serving it."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        environment="test",
        database_url=pg_database_url,
        data_dir=tmp / "data",
        encryption_key=make_key(),
        redis_url=SecretStr(SHARED_REDIS),
        # Every request is still checked; none is refused (schemathesis sends thousands).
        rate_limit_per_minute=1_000_000,
        ollama_url=f"http://127.0.0.1:{free_port()}",
        _env_file=None,
    )
    engine = engine_for(pg_database_url)
    generate(tmp / "batch", n_claims=1_500, seed=7)
    load_directory(engine, settings, WORKSPACE, tmp / "batch")
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(WORKSPACE, instance, as_of=AS_OF, store=StoreResource.from_settings(settings))
    token, _ = create_token(engine, name="fuzzer", role="admin", workspaces=[WORKSPACE])
    app = create_app(settings, redis_prefix=f"fwa-test-{secrets.token_hex(6)}:")
    server = ServerThread(app, lifespan="on").start()
    try:
        yield Served(server.url, token)
    finally:
        server.stop()
        truncate_all(engine)


# The schema does not depend on the database: build it at collection time, so that pytest
# lists one test per operation. (Schemathesis' lazy fixture loader breaks on pytest 9.)
API_SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(environment="test", _env_file=None)).openapi()
)
schema = API_SCHEMA.exclude(path_regex=SKIPPED)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_responses_match_the_schema(
    case: schemathesis.Case, served: Served
) -> None:
    # The workspace comes from the token: a generated name would only ever find the 404 path.
    if case.query is not None and "workspace" in case.query:
        case.query["workspace"] = WORKSPACE
    headers = {"Authorization": f"Bearer {served.token}"}
    case.call_and_validate(base_url=served.url, headers=headers, checks=CHECKS)


def test_the_schema_documents_every_route() -> None:
    """The fuzzing above covers what the schema lists: make sure the data routes are there."""
    paths = {operation.ok().path for operation in API_SCHEMA.get_all_operations()}
    assert {
        "/api/workspaces",
        "/api/uploads",
        "/api/pipeline/enqueue",
        "/api/pipeline/jobs/{job_id}",
        "/api/pipeline/runs",
        "/api/pipeline/runs/{run_id}",
        "/api/cases",
        "/api/cases/{case_id}",
        "/api/rules",
        "/api/providers/{npi}",
        "/api/claims/{claim_id}/provenance",
        "/api/members/{member_id}",
        "/api/agents/sessions",
        "/api/agents/chat",
    } <= paths
