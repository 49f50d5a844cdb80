"""The error responses of the OpenAPI schema, declared in one place.

Every error is one JSON shape: ``ErrorBody`` (``detail``, ``request_id``), or for a 422
``ValidationErrorBody``, which names each field. The responses that follow from what an operation
depends on are added to every operation here, read from the routes themselves, so no route
repeats them:

* 401 (with ``WWW-Authenticate``): every operation that needs a token; 503 too, as the token is
  looked up in the database.
* 403: every operation that requires a role above viewer.
* 404: every operation on a ``workspace`` the token may not see (answered like a missing one).
* 429 (with ``Retry-After``): every operation behind the rate limiter (all but the probes).
* 400: every operation with a request body (one that cannot be read at all).
* Server-Sent Events (``EventSourceResponse``): the 200 is ``text/event-stream``.

A route declares only what it alone answers (``responses={409: {"description": "..."}}``): every
error response without a body of its own is given ``ErrorBody`` here, and where a route declares
a code that is also implied (a 404 for its own resource), both descriptions are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from sse_starlette.sse import EventSourceResponse

from fwa_api.deps import current_principal, require_role, workspace_scope
from fwa_api.errors import ErrorBody
from fwa_api.middleware.route_templates import PROBE_PATHS

ERROR_REF = "#/components/schemas/ErrorBody"
# require_role builds a check per role; they all have this qualified name.
_ROLE_CHECK = f"{require_role.__qualname__}.<locals>.check_role"

_HEADER_STRING = {"schema": {"type": "string"}}
_HEADER_SECONDS = {"schema": {"type": "integer", "minimum": 0}}

UNAUTHORIZED = {
    "description": "No bearer token, or one that is unknown, revoked or expired.",
    "headers": {"WWW-Authenticate": {**_HEADER_STRING, "description": "Bearer"}},
}
FORBIDDEN = {"description": "The token's role is below what this operation requires."}
WORKSPACE_NOT_FOUND = {
    "description": "The workspace is not one of the token's, or does not exist (the same answer)."
}
RATE_LIMITED = {
    "description": "Too many requests from this caller in the last minute.",
    "headers": {"Retry-After": {**_HEADER_SECONDS, "description": "Seconds until a retry."}},
}
UNAVAILABLE = {"description": "The database is unavailable; retry later."}
UNREADABLE_BODY = {"description": "The request body could not be read (not UTF-8, say)."}
# One Server-Sent Event (Open API 3.1 has a stream's ``schema`` describe each event).
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "description": "One JSON object; its ``type`` says what it carries.",
                },
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer"},
            },
        }
    }
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _implied(route: RouteContext, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The error responses an operation has from its dependencies, its body and the
    middleware."""
    calls = list(_calls(route.dependant))
    names = {getattr(call, "__qualname__", "") for call in calls}
    found: dict[str, dict[str, Any]] = {}
    if "requestBody" in operation:
        found["400"] = UNREADABLE_BODY
    if current_principal in calls:
        found["401"] = UNAUTHORIZED
        found["503"] = UNAVAILABLE
    if _ROLE_CHECK in names:
        found["403"] = FORBIDDEN
    if workspace_scope in calls:
        found["404"] = WORKSPACE_NOT_FOUND
    if route.path_format not in PROBE_PATHS:
        found["429"] = RATE_LIMITED
    return found


def _add(responses: dict[str, Any], code: str, response: dict[str, Any]) -> None:
    declared = responses.setdefault(code, {"description": response["description"]})
    if response["description"] not in declared["description"]:
        declared["description"] = f"{declared['description']} Or: {response['description']}"
    for name, header in response.get("headers", {}).items():
        declared.setdefault("headers", {}).setdefault(name, header)


def _error_bodies(responses: dict[str, Any]) -> None:
    for code, response in responses.items():
        if code.isdigit() and int(code) >= 400 and "content" not in response:
            response["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}


def _document(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    # Route contexts, not app.routes: they carry the dependencies the including router added.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path = schema["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = path.get(method.lower())
            if operation is None:
                continue
            responses = operation["responses"]
            for code, response in _implied(route, operation).items():
                _add(responses, code, response)
            _error_bodies(responses)
            if route.response_class is EventSourceResponse:
                responses[str(route.status_code or 200)]["content"] = EVENT_STREAM


def install_openapi(app: FastAPI) -> None:
    """Document the implied error responses in ``app.openapi()``; call once routes are added."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI until the routes change: edit each one once
        if "ErrorBody" not in schema.get("components", {}).get("schemas", {}):
            _document(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
