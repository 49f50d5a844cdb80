from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import Engine, update

from fwa_pipeline.ingest import BatchRejected, load_files
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.models import Workspace
from tests.unit.ingest.batch import files, table_counts, workspace_row

WORKSPACE = "acme"

Reject = Callable[..., str]


@pytest.fixture
def loaded(sqlite_engine: Engine, settings: Settings) -> Engine:
    """A store holding one valid batch in WORKSPACE, already processed (not needing
    reprocessing): a rejected batch must leave all of it exactly as it is."""
    load_files(sqlite_engine, settings, WORKSPACE, files())
    with sqlite_engine.begin() as conn:
        conn.execute(update(Workspace).values(needs_reprocessing=False))
    return sqlite_engine


@pytest.fixture
def reject(loaded: Engine, settings: Settings) -> Reject:
    """Load ``batch_files`` into WORKSPACE expecting rejection; assert nothing was stored and
    return the user-facing message."""

    def attempt(batch_files: Mapping[str, Any], workspace: str = WORKSPACE, **limits: int) -> str:
        before = table_counts(loaded)
        workspace_before = workspace_row(loaded, WORKSPACE)
        with pytest.raises(BatchRejected) as caught:
            load_files(loaded, settings.model_copy(update=limits), workspace, batch_files)
        assert table_counts(loaded) == before
        assert workspace_row(loaded, WORKSPACE) == workspace_before
        message = str(caught.value)
        assert message.startswith("batch rejected, nothing was stored")
        return message

    return attempt
