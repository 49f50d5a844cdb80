"""Request parameters several routes share, bounded so that bad input gets a 422 naming the
field instead of reaching the database as a value it rejects."""

from typing import Annotated

from fastapi import Query

# PostgreSQL text cannot hold a NUL character: text input is matched against this.
NO_NUL = r"^[^\x00]*$"

# The largest offset a 64-bit integer (both databases' LIMIT/OFFSET) takes.
MAX_OFFSET = 2**63 - 1

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")]
