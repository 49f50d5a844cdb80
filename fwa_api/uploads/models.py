"""What the upload route takes and answers."""

from __future__ import annotations

from pydantic import BaseModel

from fwa_api.uploads.spool import MAX_PARTS


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
