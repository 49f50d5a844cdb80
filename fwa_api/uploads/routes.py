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
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.deps import require_role
from fwa_api.errors import ValidationErrorBody, error_body
from fwa_api.services import services
from fwa_api.uploads.models import REQUEST_BODY, RejectedOut, UploadOut
from fwa_api.uploads.spool import BadUpload, Spooler, TooLarge, receive, request_limit
from fwa_pipeline.ingest import BatchRejected, load_files

router = APIRouter(prefix="/api/uploads", tags=["uploads"])

Investigator = Annotated[Principal, Depends(require_role("investigator"))]


def _too_large(exc: TooLarge) -> JSONResponse:
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
    limit = request_limit(settings.max_upload_bytes)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(TooLarge(f"the upload is over {limit:,} bytes"))

    directory = Path(await run_in_threadpool(tempfile.mkdtemp, prefix="fwa-upload-"))
    try:
        spooler = Spooler(directory, settings.max_upload_bytes)
        try:
            await receive(request, boundary, spooler, limit)
        except TooLarge as exc:
            return _too_large(exc)
        except BadUpload as exc:
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
