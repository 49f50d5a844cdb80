"""Schemathesis over the app's own OpenAPI schema, with every check it has: generated requests,
valid and invalid, to every documented operation never get a 5xx, a status code the schema does
not declare, or a response (body, content type, headers) that breaks it; invalid input is refused
and valid input accepted; a request without the token is refused.

Two workspaces, one admin token for both: ``fuzz`` holds a scored demo batch, and its requests
name real ids (a case, a claim, a member, a provider, a rule, a run, a job, a chat session), so
that generated bodies and queries reach the code past the lookups; ``fuzz-empty`` exists but
holds nothing, and its ids are generated, so every not-found path is walked too.

Every free-text field is also offered awkward text (each whitespace character ``str.strip()``
knows, alone and around a word; a NUL), the inputs text handling most often gets wrong.

The app runs whole (middleware, PostgreSQL, Redis) in a real uvicorn server. ``run-full`` and
``run-stream`` are left out: they wait for a run that no daemon here will start.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.core.parameters import ParameterLocation
from sqlalchemy import Engine, select

from fwa_api.agents.sessions import create_session
from fwa_api.app import create_app
from fwa_api.auth import create_token
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.runs.launch import run_pipeline
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import engine_for, read_scope
from fwa_pipeline.store.models import (
    InvestigationCase,
    Member,
    PipelineRun,
    Provider,
    RuleHit,
    Workspace,
)
from fwa_pipeline.store.runs import enqueue_request
from fwa_pipeline.synth import generate
from tests.agents.fake_llm import ServerThread
from tests.api.conftest import SHARED_REDIS, free_port, make_workspace
from tests.conftest import make_key, truncate_all

QUERY, PATH = ParameterLocation.QUERY, ParameterLocation.PATH

# One worker runs them all (``--dist loadgroup``): the seeded server is built once per module.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.xdist_group("openapi_fuzz"),
]

WITH_DATA = "fuzz"
EMPTY = "fuzz-empty"
# The synthetic data's anchor date: the demo's runs are "as of" it.
AS_OF = dt.date(2026, 6, 30)
SKIPPED = r"/run-full$|/run-stream$"
# Per operation and workspace: about 2 minutes for the module on two cores.
MAX_EXAMPLES = 40
REQUEST_TIMEOUT_S = 30.0

# Awkward text: blank (every character str.strip() removes, in two orders), and a NUL.
BLANK = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
AWKWARD_TEXT = [BLANK, BLANK[::-1], f"{BLANK}word{BLANK}", "\x00", "a\x00b"]


@dataclass(frozen=True)
class Served:
    url: str
    token: str
    # Path parameter -> a real value in the workspace with data.
    ids: dict[str, str]


def _real_ids(engine: Engine, workspace_id: int, created_by: str) -> dict[str, str]:
    """A real value for each path parameter, in the workspace with data."""
    in_workspace = {
        model: model.workspace_id == workspace_id  # type: ignore[attr-defined]
        for model in (InvestigationCase, RuleHit, PipelineRun, Provider, Member)
    }
    with read_scope(engine) as session:

        def first(column: Any) -> str:
            found = session.scalar(select(column).where(in_workspace[column.class_]).limit(1))
            assert found is not None, f"the demo batch has no {column}"
            return str(found)

        ids = {
            "case_id": first(InvestigationCase.case_number),
            "claim_id": first(RuleHit.claim_id),
            "rule_id": first(RuleHit.rule_id),
            "run_id": first(PipelineRun.run_id),
            "npi": first(Provider.provider_id),
            "member_id": first(Member.member_id),
        }
    ids["job_id"] = enqueue_request(
        engine, workspace_id, force_reprocess=False, requested_by=created_by
    )
    ids["session_id"] = create_session(
        engine, workspace_id, created_by=created_by, title="fuzzing"
    ).session_id
    return ids


@pytest.fixture(scope="module")
def served(pg_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Both workspaces, an admin token for them, and the app serving them."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        environment="test",
        database_url=pg_database_url,
        data_dir=tmp / "data",
        encryption_key=make_key(),
        redis_url=SecretStr(SHARED_REDIS),
        # Every request is still checked; none is refused (schemathesis sends thousands).
        rate_limit_per_minute=1_000_000,
        assistant={"ollama_url": f"http://127.0.0.1:{free_port()}"},
        _env_file=None,
    )
    engine = engine_for(pg_database_url)
    generate(tmp / "batch", n_claims=1_500, seed=7)
    load_directory(engine, settings, WITH_DATA, tmp / "batch")
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(WITH_DATA, instance, as_of=AS_OF, store=StoreResource.from_settings(settings))
    make_workspace(engine, EMPTY)
    token, _ = create_token(
        engine, settings, name="fuzzer", role="admin", workspaces=[WITH_DATA, EMPTY]
    )
    with read_scope(engine) as session:
        workspace_id = session.scalars(
            select(Workspace.id).where(Workspace.name == WITH_DATA)
        ).one()
    ids = _real_ids(engine, workspace_id, "fuzzer")
    app = create_app(settings, redis_prefix=f"fwa-test-{secrets.token_hex(6)}:")
    server = ServerThread(app, lifespan="on").start()
    try:
        yield Served(server.url, token, ids)
    finally:
        server.stop()
        truncate_all(engine)


def _text_fields(api: dict[str, Any]) -> dict[str, Any]:
    """A fuzz dictionary binding for every free-text property of a JSON request body."""
    fields = set()
    for operation in (op for path in api["paths"].values() for op in path.values()):
        content = operation.get("requestBody", {}).get("content", {})
        body = content.get("application/json", {}).get("schema", {})
        if "$ref" in body:
            body = api["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
        for name, prop in body.get("properties", {}).items():
            options = prop.get("anyOf", [prop])
            if any(o.get("type") == "string" and "pattern" in o for o in options):
                fields.add(name)
    return {f"body.{name}": {"dictionary": "awkward-text", "probability": 0.25} for name in fields}


# The schema does not depend on the database: build it at collection time, so that pytest
# lists one test per operation. (Schemathesis' lazy fixture loader breaks on pytest 9.)
OPENAPI = create_app(Settings(environment="test", _env_file=None)).openapi()
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "request-timeout": REQUEST_TIMEOUT_S,
        "dictionaries": {"awkward-text": {"values": AWKWARD_TEXT}},
        "parameters": _text_fields(OPENAPI),
        "operations": [
            # Whether uploaded files are a batch is the data contract's call, which no JSON
            # Schema can express: a schema-valid upload of random bytes is rightly a 422.
            {
                "include-path": "/api/uploads",
                "checks": {"positive_data_acceptance": {"enabled": False}},
            },
            # Nor can it say which names are an investigator's token here: a generated
            # assignee is rightly a 422.
            {
                "include-path": "/api/cases/{case_id}/assign",
                "checks": {"positive_data_acceptance": {"enabled": False}},
            },
        ],
    }
)
API_SCHEMA = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
schema = API_SCHEMA.exclude(path_regex=SKIPPED)
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # the server's time, not the test's
    database=None,  # every run draws afresh; a failure prints its reproduction
    suppress_health_check=list(HealthCheck),
)


def _call(case: schemathesis.Case, served: Served, workspace: str, ids: dict[str, str]) -> None:
    # The token, unless the case tests its absence. (Not schemathesis' auth hook: the coverage
    # phase builds its cases at collection, before the fixture has made a token.)
    if not case.operation.schema.is_security_param_negated(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {served.token}"}

    # Only parts generated valid are pinned: a generated invalid one must stay invalid.
    def valid(location: ParameterLocation) -> bool:
        return case.meta is None or not case.meta.is_negative_at(location)

    # The workspace comes from the token: a generated name would only ever find the 404 path.
    if case.query and "workspace" in case.query and valid(QUERY):
        case.query = {**case.query, "workspace": workspace}
    if case.path_parameters and valid(PATH):
        pinned = {**ids, "workspace": workspace}
        case.path_parameters = {
            name: pinned.get(name, value) for name, value in case.path_parameters.items()
        }
    # No checks named: every check schemathesis has.
    case.call_and_validate(base_url=served.url)


@schema.parametrize()
@FUZZ_SETTINGS
def test_a_workspace_with_data(case: schemathesis.Case, served: Served) -> None:
    _call(case, served, WITH_DATA, served.ids)


@schema.parametrize()
@FUZZ_SETTINGS
def test_an_empty_workspace(case: schemathesis.Case, served: Served) -> None:
    _call(case, served, EMPTY, {})


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
        "/api/agents/chat/stream",
    } <= paths
