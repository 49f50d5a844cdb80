"""``POST /api/uploads``: every bad-input rule of the data contract over HTTP (the batches of
``tests.unit.ingest``, one broken thing each), the size limit while streaming, and a batch that
lands. A rejected upload must leave every table and the workspace row as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_pipeline.ingest import load_files
from fwa_pipeline.settings import Settings
from tests.api.conftest import bearer, make_token, serve
from tests.unit.ingest.batch import (
    BAD_CHECK_DIGIT,
    changed,
    files,
    render,
    rows,
    table_counts,
    workspace_row,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

WORKSPACE = "acme"
Files = dict[str, bytes]


@pytest.fixture
async def served(api_settings: Settings, pg_engine: Engine, redis_prefix: str) -> Any:
    """``served(**limits)`` starts the app with upload limits of its own."""
    stack: list[Any] = []

    async def start(**limits: int) -> httpx.AsyncClient:
        settings = api_settings.model_copy(update=limits)
        context = serve(create_app(settings, redis_prefix=redis_prefix))
        stack.append(context)
        return await context.__aenter__()

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


@pytest.fixture
def store(api_settings: Settings, pg_engine: Engine) -> Engine:
    """One valid batch in acme already: a rejected upload must leave it exactly as it is."""
    load_files(pg_engine, api_settings, WORKSPACE, files())
    return pg_engine


@pytest.fixture
def token(store: Engine) -> str:
    return make_token(store, "investigator", WORKSPACE, "fresh", "a b")


Reject = Callable[..., Any]


@pytest.fixture
def reject(served: Any, store: Engine, token: str) -> Reject:
    """``await reject(batch, status=422, workspace=..., **limits)``: upload ``batch`` expecting
    ``status``; assert nothing was stored and return the JSON body."""

    async def attempt(
        batch: Files | list[tuple[str, bytes]],
        status: int = 422,
        workspace: str = WORKSPACE,
        **limits: int,
    ) -> dict[str, Any]:
        http = await served(**limits)
        before, ws_before = table_counts(store), workspace_row(store, WORKSPACE)
        parts = batch.items() if isinstance(batch, dict) else batch
        response = await http.post(
            "/api/uploads",
            params={"workspace": workspace},
            headers=bearer(token),
            files=[("files", (name, data, "text/csv")) for name, data in parts],
        )
        assert response.status_code == status, response.text
        assert table_counts(store) == before
        assert workspace_row(store, WORKSPACE) == ws_before
        body: dict[str, Any] = response.json()
        if status == 422:
            assert body["detail"].startswith("batch rejected, nothing was stored")
        return body

    return attempt


def replaced(file: str, old: bytes, new: bytes) -> Files:
    batch = files()
    batch[file] = batch[file].replace(old, new, 1)
    return batch


def without_column(file: str, column: str) -> Files:
    batch = rows()
    for row in batch[file]:
        del row[column]
    return files(batch)


def many_claims(count: int) -> bytes:
    claim = rows()["medical_claims.csv"][0]
    return render([{**claim, "claim_id": f"MC-{i}"} for i in range(count)])


def with_column(file: str, column: bytes, value: str = "") -> Files:
    """The valid batch with one more column in ``file``: header name ``column`` (raw bytes),
    ``value`` in the first row, empty below."""
    file_rows = rows()[file]
    data = render(file_rows, columns=[*file_rows[0], "extra"]).replace(b"extra", column, 1)
    data = data.replace(b",\n", f",{value}\n".encode(), 1)
    return {**files(), file: data}


def header_only(file: str) -> Files:
    return {**files(), file: files()[file].split(b"\n", 1)[0] + b"\n"}


def without_claims() -> Files:
    batch = files()
    del batch["medical_claims.csv"], batch["pharmacy_claims.csv"]
    return batch


# (batch, message fragment, file and column the structured problem names)
CONTRACT_ERRORS: dict[str, tuple[Callable[[], Files], str, str, str | None]] = {
    "not utf-8": (
        lambda: replaced("providers.csv", b"Lakeside", b"Lake\xe9side"),
        "providers.csv, line 3, column name: not valid UTF-8 text",
        "providers.csv",
        "name",
    ),
    "nul byte": (
        lambda: replaced("medical_claims.csv", b"MC-2", b"MC\x00-2"),
        "medical_claims.csv, line 3, column claim_id: a NUL byte",
        "medical_claims.csv",
        "claim_id",
    ),
    "binary content": (
        lambda: replaced("pharmacy_claims.csv", b"RX-1", b"RX\x1b-1"),
        "pharmacy_claims.csv, line 2, column claim_id: binary content (control byte 0x1b)",
        "pharmacy_claims.csv",
        "claim_id",
    ),
    "required column missing": (
        lambda: without_column("medical_claims.csv", "service_date"),
        "medical_claims.csv, line 1, column service_date: required column is missing",
        "medical_claims.csv",
        "service_date",
    ),
    "duplicate column": (
        lambda: replaced("pharmacy_claims.csv", b"refill_number", b" Days_Supply"),
        "pharmacy_claims.csv, line 1, column days_supply: the column appears 2 times",
        "pharmacy_claims.csv",
        "days_supply",
    ),
    "wrong number of fields": (
        lambda: replaced("providers.csv", b"Main Street", b"Main, Street"),
        "providers.csv, row 3: the row does not have the header's 7 fields",
        "providers.csv",
        None,
    ),
    "empty file": (
        lambda: {**files(), "ncci_edits.csv": b""},
        "ncci_edits.csv, line 1: the file is empty: a header row is required",
        "ncci_edits.csv",
        None,
    ),
    "header only": (
        lambda: header_only("pharmacy_claims.csv"),
        "pharmacy_claims.csv: the file has a header but no data rows",
        "pharmacy_claims.csv",
        None,
    ),
    "column name over the field limit": (
        # Past the csv module's own field limit (128 KiB), where the header once gave a 500.
        lambda: with_column("medical_claims.csv", b"x" * 200 * 1024),
        "medical_claims.csv, line 1: a column name is longer than 65,536 bytes",
        "medical_claims.csv",
        None,
    ),
    "cell over the field limit": (
        lambda: with_column("providers.csv", b"notes", "n" * 70_000),
        "providers.csv, row 1, column notes: longer than 65,536 bytes, the limit for any field",
        "providers.csv",
        "notes",
    ),
    "unknown file name": (
        lambda: {**files(), "claims_2024.csv": files()["medical_claims.csv"]},
        "claims_2024.csv: not a contract file",
        "claims_2024.csv",
        None,
    ),
    "same file twice": (
        lambda: {**files(), "Medical_Claims.CSV": files()["medical_claims.csv"]},
        "Medical_Claims.CSV: medical_claims.csv is given more than once",
        "Medical_Claims.CSV",
        None,
    ),
    "no claims file": (
        without_claims,
        "batch: a batch must contain at least one claims file",
        "batch",
        None,
    ),
    "formula injection": (
        lambda: replaced("providers.csv", b'"Lakeside Clinic, Inc."', b'"=HYPERLINK()"'),
        "providers.csv, row 2, column name: starts with =, +, -, @, a tab or a carriage return",
        "providers.csv",
        "name",
    ),
    "text too long": (
        lambda: changed("medical_claims.csv", 0, "claim_id", "C" * 65),
        "medical_claims.csv, row 1, column claim_id: longer than 64 characters",
        "medical_claims.csv",
        "claim_id",
    ),
    "member name too long": (
        lambda: changed("members.csv", 0, "last_name", "Q" * 101),
        "members.csv, row 1, column last_name: longer than 100 characters",
        "members.csv",
        "last_name",
    ),
    "not an iso date": (
        lambda: changed("medical_claims.csv", 1, "service_date", "02/01/2024"),
        "medical_claims.csv, row 2, column service_date: not an ISO date (YYYY-MM-DD)",
        "medical_claims.csv",
        "service_date",
    ),
    "not a calendar date": (
        lambda: changed("pharmacy_claims.csv", 0, "fill_date", "2023-02-29"),
        "pharmacy_claims.csv, row 1, column fill_date: not a calendar date",
        "pharmacy_claims.csv",
        "fill_date",
    ),
    "money not a number": (
        lambda: changed("medical_claims.csv", 0, "amount_billed", "$12.00"),
        "medical_claims.csv, row 1, column amount_billed: not a number",
        "medical_claims.csv",
        "amount_billed",
    ),
    "money with three decimals": (
        lambda: changed("pharmacy_claims.csv", 1, "amount_paid", "10.125"),
        "pharmacy_claims.csv, row 2, column amount_paid: money has more than 2 decimal places",
        "pharmacy_claims.csv",
        "amount_paid",
    ),
    "decimal not a number": (
        lambda: changed("pharmacy_claims.csv", 0, "quantity", "sixty"),
        "pharmacy_claims.csv, row 1, column quantity: not a number: 'sixty'",
        "pharmacy_claims.csv",
        "quantity",
    ),
    "not an integer": (
        lambda: changed("medical_claims.csv", 1, "units", "1.5"),
        "medical_claims.csv, row 2, column units: not an integer: '1.5'",
        "medical_claims.csv",
        "units",
    ),
    "not an ndc": (
        lambda: changed("pharmacy_claims.csv", 1, "ndc_code", "NDC123"),
        "pharmacy_claims.csv, row 2, column ndc_code: expected an NDC",
        "pharmacy_claims.csv",
        "ndc_code",
    ),
    "not a boolean": (
        lambda: changed("providers.csv", 0, "excluded", "yes"),
        "providers.csv, row 1, column excluded: expected true or false: 'yes'",
        "providers.csv",
        "excluded",
    ),
    "not a choice": (
        lambda: changed("providers.csv", 2, "provider_type", "doctor"),
        "providers.csv, row 3, column provider_type: expected one of individual, organization",
        "providers.csv",
        "provider_type",
    ),
    "malformed code": (
        lambda: changed("medical_claims.csv", 0, "cpt_code", "9921"),
        "medical_claims.csv, row 1, column cpt_code: expected 5 digits (CPT)",
        "medical_claims.csv",
        "cpt_code",
    ),
    "npi not ten digits": (
        lambda: changed("pharmacy_claims.csv", 0, "pharmacy_id", "123456789"),
        "pharmacy_claims.csv, row 1, column pharmacy_id: expected an NPI: 10 digits",
        "pharmacy_claims.csv",
        "pharmacy_id",
    ),
    "reference npi check digit": (
        lambda: changed("providers.csv", 0, "provider_id", BAD_CHECK_DIGIT),
        "providers.csv, row 1, column provider_id: the NPI check digit is wrong",
        "providers.csv",
        "provider_id",
    ),
    "empty claim id": (
        lambda: changed("labels.csv", 0, "claim_id", "  "),
        "labels.csv, row 1, column claim_id: required value is empty",
        "labels.csv",
        "claim_id",
    ),
    "reference required value empty": (
        lambda: changed("members.csv", 0, "gender", ""),
        "members.csv, row 1, column gender: required value is empty",
        "members.csv",
        "gender",
    ),
    "reference value out of range": (
        lambda: changed("cpt_reference.csv", 0, "em_level", "7"),
        "cpt_reference.csv, row 1, column em_level: must be between 1 and 5",
        "cpt_reference.csv",
        "em_level",
    ),
}


def named(body: dict[str, Any], file: str, column: str | None) -> bool:
    return any(p["file"] == file and p["column"] == column for p in body["problems"])


@pytest.mark.parametrize("case", list(CONTRACT_ERRORS))
async def test_every_contract_error_is_a_422_naming_file_row_and_column(
    reject: Reject, case: str
) -> None:
    build, fragment, file, column = CONTRACT_ERRORS[case]
    body = await reject(build())
    assert fragment in body["detail"]
    assert named(body, file, column), body["problems"]


async def test_member_values_are_never_quoted(reject: Reject) -> None:
    body = await reject(changed("members.csv", 0, "first_name", "=Zelda"))
    assert "members.csv, row 1, column first_name: starts with =" in body["detail"]
    assert "Zelda" not in str(body)


async def test_a_header_only_batch_creates_no_workspace(reject: Reject, store: Engine) -> None:
    claims = header_only("medical_claims.csv")["medical_claims.csv"]
    body = await reject({"medical_claims.csv": claims}, workspace="fresh")
    assert "medical_claims.csv: the file has a header but no data rows" in body["detail"]
    assert workspace_row(store, "fresh") is None


async def test_the_row_and_column_limits(reject: Reject) -> None:
    body = await reject(files(), max_upload_rows=3)
    assert "providers.csv, row 4: the file has 4 data rows; the limit is 3" in body["detail"]
    body = await reject(files(), max_upload_columns=7)
    assert "medical_claims.csv, line 1, column units: the header has 11 columns" in body["detail"]
    assert named(body, "medical_claims.csv", "units")


async def test_the_same_file_name_twice_is_reported(reject: Reject) -> None:
    claims = files()["medical_claims.csv"]
    body = await reject([*files().items(), ("medical_claims.csv", claims)])
    assert "medical_claims.csv is given more than once" in body["detail"]


async def test_repeated_names_count_as_files_toward_the_limit(reject: Reject) -> None:
    # A name shaped like the key a repeat is kept under must not let repeats go uncounted.
    claims = files()["medical_claims.csv"]
    parts = [("part3/medical_claims.csv", claims)] + [("medical_claims.csv", claims)] * 40
    body = await reject(parts, status=400)
    assert body["detail"] == "more than 16 files"


async def test_a_bad_workspace_name_is_refused(reject: Reject) -> None:
    body = await reject(files(), workspace="a b")
    assert "batch: the workspace name must be 1-64 letters" in body["detail"]


# --------------------------------------------------------------------------- size limit


async def test_a_file_over_the_limit_is_a_413_naming_it(reject: Reject) -> None:
    data = many_claims(16_000)
    assert len(data) > 1024 * 1024
    body = await reject({**files(), "medical_claims.csv": data}, status=413, max_upload_mb=1)
    assert "medical_claims.csv: the file is over 1,048,576 bytes" in body["detail"]
    assert body["problems"] == [{"file": "medical_claims.csv", "message": body["detail"]}]


class Body:
    """A multipart body sent in chunks, counting how many the server asked for."""

    def __init__(self, parts: list[tuple[str, bytes]], chunk: int = 64 * 1024) -> None:
        request = httpx.Request("POST", "http://x", files=[("f", (n, d)) for n, d in parts])
        self.content_type = request.headers["content-type"]
        data = request.read()
        self.chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self.sent = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk


async def post(
    http: httpx.AsyncClient, token: str, body: Body, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(
        "/api/uploads",
        params={"workspace": WORKSPACE},
        headers={**bearer(token), "Content-Type": body.content_type, **(headers or {})},
        content=body.stream(),
    )


async def test_a_chunked_upload_stops_at_the_limit(served: Any, store: Engine, token: str) -> None:
    http = await served(max_upload_mb=1)
    before = table_counts(store)
    body = Body(
        [("members.csv", files()["members.csv"]), ("medical_claims.csv", many_claims(40_000))]
    )
    assert len(body.chunks) > 40

    response = await post(http, token, body)  # no Content-Length: chunked

    assert response.status_code == 413
    assert "medical_claims.csv: the file is over 1,048,576 bytes" in response.json()["detail"]
    assert body.sent < len(body.chunks)  # the rest of the body was never read
    assert table_counts(store) == before


async def test_the_whole_request_is_limited_too(served: Any, store: Engine, token: str) -> None:
    """Files each within the limit, more of them than a batch has: 413 at the request limit."""
    http = await served(max_upload_mb=1)
    claims = many_claims(12_000)
    assert len(claims) < 1024 * 1024
    body = Body([(f"extra{i}.csv", claims) for i in range(12)])

    response = await post(http, token, body)

    assert response.status_code == 413
    assert response.json()["detail"].startswith("the upload is over")
    assert body.sent < len(body.chunks)


async def test_a_declared_content_length_over_the_limit_is_refused_unread(
    served: Any, store: Engine, token: str
) -> None:
    http = await served(max_upload_mb=1)
    body = Body(list(files().items()))

    response = await post(http, token, body, {"Content-Length": str(1024**3)})

    assert response.status_code == 413
    assert response.json()["detail"].startswith("the upload is over")
    assert body.sent == 0


# --------------------------------------------------------------------------- requests


async def test_a_batch_lands_and_creates_a_new_workspace(
    served: Any, store: Engine, token: str
) -> None:
    http = await served()
    batch = rows()
    for row in batch["members.csv"]:
        row["plan_code"] = "GOLD"  # not a contract column: dropped with a warning
    response = await http.post(
        "/api/uploads",
        params={"workspace": "fresh"},
        headers=bearer(token),
        files=[("files", (n, d, "text/csv")) for n, d in files(batch).items()],
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["workspace"] == "fresh" and body["source"] == "api"
    assert isinstance(body["batch_id"], int)
    assert body["files"]["medical_claims.csv"] == 2 and body["files"]["members.csv"] == 2
    assert body["rows"] == sum(body["files"].values())
    assert any("plan_code" in warning for warning in body["warnings"])
    row = workspace_row(store, "fresh")
    assert row is not None and row["needs_reprocessing"] is True
    listed = await http.get("/api/workspaces/fresh", headers=bearer(token))
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "detail"),
    [
        ({"json": {"files": []}}, 415, "send the files as multipart/form-data"),
        (
            {"content": b"x", "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "the multipart boundary is missing",
        ),
        ({"data": {"note": "hello"}, "files": {"f": ("members.csv", b"x")}}, 400, "every part"),
        (
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="f"; filename="m.csv"'
                b"\r\n\r\nmember_id\r\n",
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            400,
            "ends before its closing boundary",
        ),
    ],
    ids=["not multipart", "no boundary", "a plain field", "truncated"],
)
async def test_malformed_requests(
    served: Any, store: Engine, token: str, kwargs: dict[str, Any], status: int, detail: str
) -> None:
    http = await served()
    before = table_counts(store)
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    response = await http.post(
        "/api/uploads", params={"workspace": WORKSPACE}, headers=headers, **kwargs
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert table_counts(store) == before


async def test_roles_and_workspaces(served: Any, store: Engine, token: str) -> None:
    http = await served()
    viewer = make_token(store, "viewer", WORKSPACE)
    batch = [("files", (n, d, "text/csv")) for n, d in files().items()]
    params = {"workspace": WORKSPACE}
    response = await http.post("/api/uploads", params=params, headers=bearer(viewer), files=batch)
    assert response.status_code == 403
    response = await http.post("/api/uploads", params=params, files=batch)
    assert response.status_code == 401
    other = {"workspace": "globex"}  # not one of the token's: as if it did not exist
    response = await http.post("/api/uploads", params=other, headers=bearer(token), files=batch)
    assert (response.status_code, response.json()["detail"]) == (404, "workspace not found")
    assert workspace_row(store, "globex") is None
