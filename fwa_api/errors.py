"""Error responses: one JSON shape (``detail`` plus ``request_id``), no internals to the client.

* ``HTTPException``: passed through (status, detail, headers); a 405's ``Allow`` lists the
  methods of every route at the path.
* Validation errors: 422 naming each field; the offending input is not echoed (it may be PHI).
* Database unreachable or pool exhausted: 503, so clients know to retry.
* A value the domain refuses (``InvalidInput`` from the store or the domain, ``ConfigError``):
  422 in the validation errors' shape, naming each field with the domain's own message (which
  never repeats the value).
* A value the database rejects (``DataError``: a NUL in text, a number out of range): 422.
  The routes bound their inputs so this should not happen; when it does, the client still
  gets a 4xx, and the log names the exception type, never the value.
* The OpenAPI schema documents the 422 body as it is sent (``ValidationErrorBody``), not as
  FastAPI's default ``HTTPValidationError``.
* Anything else: 500 ``internal error`` from ``CatchAllMiddleware``, the traceback only in the
  server log. It sits innermost, just outside the router, so the 500 still passes through every
  other middleware (request id, metrics, security headers, CORS); FastAPI would otherwise hand
  ``Exception`` handlers to ``ServerErrorMiddleware``, outside all of them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fwa_api.middleware.route_templates import route_path
from fwa_pipeline.domain.config import ConfigError
from fwa_pipeline.kit.logging import request_id_var
from fwa_pipeline.kit.validation import InvalidInput

logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error response but a 422's: what went wrong, and the request's id for the logs."""

    detail: str
    request_id: str | None


class ValidationErrorBody(BaseModel):
    detail: str
    errors: list[FieldError]
    request_id: str | None


def error_body(detail: Any, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, **extra, "request_id": request_id_var.get()}


def _allowed_methods(request: Request) -> str:
    """Every method a route serves at the request's path. The router answers 405 from the first
    route that matches the path alone, and its ``Allow`` leaves out the other routes' methods
    (``GET`` and ``POST /api/agents/sessions`` are two routes)."""
    path = route_path(request.scope)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path_regex is not None and route.path_regex.match(path) and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse(error_body(exc.detail), status_code=exc.status_code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return JSONResponse(error_body("invalid request", errors=errors), status_code=422)


async def _invalid_input(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput | ConfigError)
    errors = [
        {"field": field, "message": message, "type": "invalid_input"}
        for field, message in exc.problems
    ]
    return JSONResponse(error_body("invalid request", errors=errors), status_code=422)


async def _database_unavailable(_request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(error_body("database unavailable"), status_code=503)


async def _value_rejected(_request: Request, exc: Exception) -> Response:
    logger.warning("database rejected a value from the request: %s", type(exc).__name__)
    return JSONResponse(
        error_body("a value in the request is not valid (out of range or not plain text)"),
        status_code=422,
    )


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            logger.exception("unhandled error")
            if started:  # too late for a response: let the server drop the connection
                raise
            await JSONResponse(error_body("internal error"), status_code=500)(scope, receive, send)


def _document_validation_errors(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()  # cached by FastAPI after the first call: edit it once
        components = schema.get("components", {}).get("schemas", {})
        if fresh and "HTTPValidationError" in components:
            body = ValidationErrorBody.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.update(body.pop("$defs", {}))
            components["HTTPValidationError"] = body
            components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handling(app: FastAPI) -> None:
    """Register the handlers and the catch-all; call before adding any other middleware so the
    catch-all ends up innermost."""
    _document_validation_errors(app)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(ConfigError, _invalid_input)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(DataError, _value_rejected)
    app.add_middleware(CatchAllMiddleware)
