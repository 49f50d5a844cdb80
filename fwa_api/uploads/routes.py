"""``POST /api/uploads?workspace=NAME``: contract CSV files as one multipart request, landed as one
batch by the loader the CLI uses (``fwa_pipeline.ingest.load_files``), all or nothing.

Investigator role or higher. A workspace the token names but that does not exist yet is created
by the loader. Each file part is named by its filename (``medical_claims.csv``...; the form
field's name does not matter) and is written to a temporary directory as it arrives, never held
in memory; the directory is removed when the request ends.

* 201: ``{batch_id, workspace, files: {name: rows}, rows, warnings, source}``.
* 422: the data contract rejected the batch; nothing was stored. ``detail`` is the CLI's message
  and ``problems`` lists each problem with its file, line or rows, and column.
* 413: a file is over ``FWA_MAX_UPLOAD_MB``, or the request over that times the number of
  contract files. A declared Content-Length over the limit is refused before anything is read;
  otherwise bytes are counted as they arrive and reading stops at the limit.
* 415: not ``multipart/form-data``; 400: a malformed body or a part that is not a file.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from fwa_api.auth import Principal
from fwa_api.deps import require_role
from fwa_api.errors import ValidationErrorBody, error_body
from fwa_api.services import services
from fwa_pipeline.ingest import BatchRejected, load_files
from fwa_pipeline.ingest.contract import FILES

router = APIRouter(prefix="/api/uploads", tags=["uploads"])

Investigator = Annotated[Principal, Depends(require_role("investigator"))]

# Room for the multipart framing (boundaries, part headers) besides the files themselves.
FRAMING_BYTES = 64 * 1024
# Every contract file once, and as many again for names the loader reports as unknown or
# repeated; more parts than that is not a batch.
MAX_PARTS = 2 * len(FILES)


class UploadOut(BaseModel):
    batch_id: int
    workspace: str
    source: str
    files: dict[str, int]
    rows: int
    warnings: list[str]


class ProblemOut(BaseModel):
    file: str
    message: str
    line: int | None = None
    rows: list[int] = []
    more_rows: int = 0
    column: str | None = None


class RejectedOut(BaseModel):
    """413 and 422 (a rejected batch): what was wrong, file by file."""

    detail: str
    problems: list[ProblemOut]
    request_id: str | None


# The body is read as a stream, not declared as parameters: describe it for the schema.
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "minItems": 1,
                        "maxItems": MAX_PARTS,
                        "description": "Contract CSV files, each a part with a filename (the "
                        "contract file name, e.g. medical_claims.csv).",
                    }
                },
            },
            "encoding": {"files": {"contentType": "text/csv"}},
        }
    },
}


class _TooLarge(Exception):
    def __init__(self, detail: str, file: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.file = file


class _BadUpload(Exception):
    pass


class _Spooler:
    """python-multipart callbacks writing each file part to a file of its own in ``directory``.

    Callbacks run inside ``parser.write`` and only collect the data; the handler writes it in
    a worker thread after each chunk, so disk writes never block the event loop."""

    def __init__(self, directory: Path, max_file_bytes: int) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        # Given file name -> its spooled copy, in arrival order.
        self.files: dict[str, Path] = {}
        self._parts = 0
        self.pending: list[tuple[BinaryIO, bytes]] = []
        self._open: list[BinaryIO] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._size = 0
        self._out: BinaryIO | None = None
        self.complete = False  # the closing boundary was seen

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._name = ""
        self._size = 0
        self._out = None

    def _end(self) -> None:
        self.complete = True

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw = options.get(b"filename")
        if not raw:
            raise _BadUpload("every part must be a file with a filename (a contract file name)")
        # Parts are counted, not names: a name can repeat (or look like a renamed repeat).
        if self._parts >= MAX_PARTS:
            raise _BadUpload(f"more than {MAX_PARTS} files")
        self._parts += 1
        name = raw.decode("utf-8", "replace")
        # A name given twice keeps both parts, so the loader reports the repetition.
        key = name
        while key in self.files:
            key = f"part{self._parts}/{key}"
        path = self.directory / f"{self._parts}.csv"  # never a client-chosen path
        self._out = path.open("wb")
        self._open.append(self._out)
        self.files[key] = path
        self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._out is not None  # headers come first
        self._size += end - start
        if self._size > self.max_file_bytes:
            raise _TooLarge(
                f"{self._name}: the file is over {self.max_file_bytes:,} bytes, the limit per "
                "file (FWA_MAX_UPLOAD_MB)",
                self._name,
            )
        self.pending.append((self._out, data[start:end]))

    def flush(self) -> None:
        for out, data in self.pending:
            out.write(data)
        self.pending.clear()

    def close(self) -> None:
        for out in self._open:
            out.close()


async def _receive(request: Request, boundary: bytes, spooler: _Spooler, limit: int) -> None:
    """Stream the body through the parser into the spooler, stopping at ``limit`` bytes."""
    parser = MultipartParser(boundary, spooler.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _TooLarge(f"the upload is over {limit:,} bytes")
            parser.write(chunk)
            if spooler.pending:
                await run_in_threadpool(spooler.flush)
        parser.finalize()
    except MultipartParseError as exc:
        raise _BadUpload(f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise _BadUpload("the upload was interrupted") from None
    finally:
        spooler.close()
    if not spooler.complete:
        raise _BadUpload("the multipart body ends before its closing boundary")


def _request_limit(max_file_bytes: int) -> int:
    return max_file_bytes * len(FILES) + FRAMING_BYTES


def _too_large(exc: _TooLarge) -> JSONResponse:
    problems = [] if exc.file is None else [{"file": exc.file, "message": exc.detail}]
    return JSONResponse(error_body(exc.detail, problems=problems), status_code=413)


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={
        413: {"model": RejectedOut, "description": "A file or the request is too large."},
        404: {"description": "The workspace is not one of the token's."},
        415: {"description": "Not multipart/form-data."},
        400: {"description": "A malformed multipart body."},
        422: {
            "model": RejectedOut | ValidationErrorBody,
            "description": "The data contract rejected the batch (nothing was stored), or the "
            "query is invalid.",
        },
    },
)
async def upload(request: Request, principal: Investigator, workspace: str) -> JSONResponse:
    # Not WorkspaceId: a workspace the token names may not exist yet (the loader creates it).
    if workspace not in principal.workspaces:
        raise HTTPException(404, "workspace not found")
    app = services(request)
    settings = app.settings
    media_type, params = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise HTTPException(415, "send the files as multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "the multipart boundary is missing")
    limit = _request_limit(settings.max_upload_bytes)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(_TooLarge(f"the upload is over {limit:,} bytes"))

    directory = Path(await run_in_threadpool(tempfile.mkdtemp, prefix="fwa-upload-"))
    try:
        spooler = _Spooler(directory, settings.max_upload_bytes)
        try:
            await _receive(request, boundary, spooler, limit)
        except _TooLarge as exc:
            return _too_large(exc)
        except _BadUpload as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            result = await run_in_threadpool(
                load_files,
                app.engine,
                settings,
                workspace,
                dict(spooler.files),
                source="api",
            )
        except BatchRejected as exc:
            problems = [problem.as_dict() for problem in exc.problems]
            return JSONResponse(error_body(str(exc), problems=problems), status_code=422)
    finally:
        await run_in_threadpool(shutil.rmtree, directory, True)
    out = UploadOut.model_validate(result.summary())
    return JSONResponse(out.model_dump(), status_code=201)
