"""Input the database would reject (a NUL character in text, an offset past 64 bits) gets a 422
naming the field, before any query runs; and a value the database rejects anyway is a 422, not
a 500."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import bearer, make_token, make_workspace

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

WS = "north"


@pytest.fixture
def token(pg_engine: Engine) -> str:
    make_workspace(pg_engine, WS)
    return make_token(pg_engine, "investigator", WS)


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "invalid request"
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/members/M%001", "path.member_id"),
        ("/api/claims/C%001/provenance", "path.claim_id"),
        ("/api/pipeline/runs/r%001", "path.run_id"),
        ("/api/rules/RULE%00", "path.rule_id"),
    ],
)
async def test_a_nul_in_an_id_is_a_422_naming_it(
    api: httpx.AsyncClient, token: str, path: str, field: str
) -> None:
    response = await api.get(path, params={"workspace": WS}, headers=bearer(token))
    assert fields(response) == [field]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/cases/CASE-000001/notes", {"note": "see\x00attached"}, "body.note"),
        ("/api/agents/sessions", {"title": "north\x00"}, "body.title"),
        ("/api/agents/chat", {"message": "why\x00?"}, "body.message"),
    ],
)
async def test_a_nul_in_text_is_a_422_naming_it(
    api: httpx.AsyncClient, token: str, path: str, body: dict[str, str], field: str
) -> None:
    response = await api.post(path, params={"workspace": WS}, json=body, headers=bearer(token))
    assert fields(response) == [field]
    assert "attached" not in response.text  # the input is not echoed


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/agents/sessions", {"title": "\x1f"}, "body.title"),
        ("/api/agents/chat", {"message": " \x1c\x1d\x1e "}, "body.message"),
        ("/api/agents/chat", {"message": "\t\u3000\n"}, "body.message"),
    ],
)
async def test_blank_text_is_a_422_naming_it(
    api: httpx.AsyncClient, token: str, path: str, body: dict[str, str], field: str
) -> None:
    """Blank as ``str.strip()`` sees it, the one definition the store shares."""
    response = await api.post(path, params={"workspace": WS}, json=body, headers=bearer(token))
    assert fields(response) == [field]
    assert "blank" in response.json()["errors"][0]["message"]


async def test_text_over_several_lines_is_still_fine(api: httpx.AsyncClient, token: str) -> None:
    response = await api.post(
        "/api/agents/sessions",
        params={"workspace": WS},
        json={"title": "first line\nsecond line"},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/api/cases", "/api/pipeline/runs", "/api/rules"])
async def test_an_offset_past_64_bits_is_a_422(
    api: httpx.AsyncClient, token: str, path: str
) -> None:
    huge = {"workspace": WS, "offset": str(2**64)}
    assert fields(await api.get(path, params=huge, headers=bearer(token))) == ["query.offset"]
    largest = {"workspace": WS, "offset": str(2**63 - 1)}
    assert (await api.get(path, params=largest, headers=bearer(token))).status_code == 200
