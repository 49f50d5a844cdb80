"""What the OpenAPI schema declares beyond the success bodies: the error responses each operation
can give (one error model), the upload's required parts and the streaming routes' content type.
The fuzz test (``test_openapi_fuzz``) checks the running app against these declarations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fwa_api.app import create_app
from fwa_pipeline.settings import Settings

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
# Some of the operations that need more than the viewer role.
ROLE_CHECKED = {
    ("post", "/api/cases/{case_id}/status"),
    ("post", "/api/cases/{case_id}/notes"),
    ("post", "/api/uploads"),
    ("post", "/api/pipeline/enqueue"),
    ("post", "/api/pipeline/run-full"),
    ("post", "/api/pipeline/run-stream"),
}
PUBLIC = {("get", "/api/health")}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(environment="test", _env_file=None)).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_protected_operation_declares_401_403_429_and_503(document: dict[str, Any]) -> None:
    protected = [(m, p, op) for m, p, op in operations(document) if (m, p) not in PUBLIC]
    assert len(protected) > 25
    for method, path, operation in protected:
        responses = operation["responses"]
        where = f"{method} {path}"
        assert responses["401"]["content"] == ERROR, where
        assert "WWW-Authenticate" in responses["401"]["headers"], where
        assert "Retry-After" in responses["429"]["headers"], where
        assert responses["503"]["content"] == ERROR, where
        if (method, path) in ROLE_CHECKED:
            assert "403" in responses, where
    assert "403" not in document["paths"]["/api/cases"]["get"]["responses"]  # any role reads
    health = document["paths"]["/api/health"]["get"]["responses"]
    assert not {"401", "403", "429"} & set(health)  # public, and never rate limited


def test_every_error_response_has_a_body_schema(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                assert "application/json" in response.get("content", {}), (method, path, code)
    body = document["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"detail", "request_id"}


def test_workspace_and_resource_404s_409_and_413_are_declared(document: dict[str, Any]) -> None:
    paths = document["paths"]
    case = paths["/api/cases/{case_id}"]["get"]["responses"]["404"]["description"]
    assert "No such case" in case and "workspace" in case
    assert "404" in paths["/api/rules"]["get"]["responses"]  # a workspace the token lacks
    assert "409" in paths["/api/cases/{case_id}/status"]["post"]["responses"]
    assert "403" in paths["/api/agents/sessions/{session_id}"]["delete"]["responses"]
    upload = paths["/api/uploads"]["post"]["responses"]
    assert upload["413"]["content"]["application/json"]["schema"]["$ref"].endswith("RejectedOut")
    assert "404" in upload


def test_the_upload_requires_its_file_parts(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/uploads"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]
    assert form["schema"]["required"] == ["files"]
    assert form["schema"]["properties"]["files"]["minItems"] == 1
    assert form["encoding"]["files"]["contentType"] == "text/csv"


def test_streaming_routes_answer_server_sent_events(document: dict[str, Any]) -> None:
    for path in ("/api/agents/chat/stream", "/api/pipeline/run-stream"):
        ok = document["paths"][path]["post"]["responses"]["200"]
        assert set(ok["content"]) == {"text/event-stream"}, path


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_405_allows_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    """Two routes share the path (GET and POST): the router's own ``Allow`` named one."""
    for path, methods in (
        ("/api/agents/sessions", {"GET", "POST"}),
        ("/api/agents/sessions/00000000-0000-4000-8000-000000000000", {"GET", "DELETE"}),
    ):
        response = await api.request("PATCH", path)
        assert response.status_code == 405
        assert set(response.headers["Allow"].split(", ")) == methods, path
        assert response.json()["detail"] == "Method Not Allowed"
