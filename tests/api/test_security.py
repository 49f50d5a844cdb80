"""Security headers on every kind of response, and CORS from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_api.middleware.security_headers import API_CSP, PAGE_CSP
from fwa_pipeline.settings import Settings
from tests.api.conftest import serve

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ORIGIN = "https://fwa.example.org"
COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "x-xss-protection": "0",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


@pytest.fixture
async def http(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/chat", response_class=HTMLResponse)
    async def page() -> str:
        return "<!doctype html><title>chat</title>"

    @router.get("/cached-page", response_class=HTMLResponse)
    async def cached_page() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'self'"})

    @router.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    settings = api_settings.model_copy(
        update={"allowed_origins": [ORIGIN], "rate_limit_per_minute": 3}
    )
    app = create_app(settings, redis_prefix=redis_prefix)
    app.include_router(router)
    async with serve(app) as client:
        yield client


def assert_common(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, name
    assert response.headers["x-request-id"]


async def test_every_kind_of_response_carries_the_headers(http: httpx.AsyncClient) -> None:
    responses = {
        "health": await http.get("/api/health"),
        "401": await http.get("/api/workspaces"),
        "404": await http.get("/api/nothing-here"),
        "405": await http.delete("/api/health"),
        "500": await http.get("/api/boom"),
        "429": await http.get("/api/workspaces"),
        "metrics": await http.get("/metrics"),
    }
    assert [r.status_code for r in responses.values()] == [200, 401, 404, 405, 500, 429, 200]
    for kind, response in responses.items():
        assert_common(response)
        assert response.headers["content-security-policy"] == API_CSP, kind
        expected_cache = None if kind == "metrics" else "no-store"
        assert response.headers.get("cache-control") == expected_cache, kind


async def test_html_pages_get_a_csp_without_unsafe_inline(http: httpx.AsyncClient) -> None:
    page = await http.get("/chat")
    assert page.status_code == 200
    assert_common(page)
    csp = page.headers["content-security-policy"]
    assert csp == PAGE_CSP
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "cache-control" not in page.headers  # not under /api


async def test_a_header_the_route_set_is_kept(http: httpx.AsyncClient) -> None:
    page = await http.get("/cached-page")
    assert page.headers.get_list("content-security-policy") == ["default-src 'self'"]
    assert_common(page)


async def test_cors_preflight_from_an_allowed_origin(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/api/workspaces",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": (
                "authorization, content-type, x-request-id, idempotency-key"
            ),
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "x-request-id", "idempotency-key"} <= allowed
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens, no cookies
    assert_common(response)


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example.com", "GET", "authorization"),
        (ORIGIN, "TRACE", "authorization"),
        (ORIGIN, "GET", "x-custom-header"),
    ],
)
async def test_cors_preflight_refused(
    http: httpx.AsyncClient, origin: str, method: str, headers: str
) -> None:
    response = await http.options(
        "/api/workspaces",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    assert response.status_code == 400
    if origin != ORIGIN:
        assert "access-control-allow-origin" not in response.headers


async def test_cors_on_a_simple_request_exposes_request_id_and_retry_after(
    http: httpx.AsyncClient,
) -> None:
    allowed = await http.get("/api/health", headers={"Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in allowed.headers["access-control-expose-headers"].split(",")
    }
    assert exposed == {"x-request-id", "retry-after"}
    refused = await http.get("/api/health", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in refused.headers
    assert "Origin" in refused.headers["vary"]


async def test_a_request_without_origin_gets_no_cors_headers(http: httpx.AsyncClient) -> None:
    # A cacheable page varies on Origin, so a shared cache never hands it to a cross-origin
    # request; API responses are no-store, never cached, and need no Vary.
    page = await http.get("/chat")
    assert page.status_code == 200 and page.headers.get_list("vary") == ["Origin"]
    api = await http.get("/api/health")
    assert api.headers["cache-control"] == "no-store" and "vary" not in api.headers
    for response in (page, api):
        assert not [name for name in response.headers if name.startswith("access-control-")]
