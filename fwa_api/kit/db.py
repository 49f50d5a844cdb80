"""Store reads from a route: a query function run in a read-only session of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

from fwa_pipeline.store.db import read_scope

T = TypeVar("T")


def in_session(engine: Engine, query: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``query(session, *args, **kwargs)`` in a read-only session of its own
    (``store.db.read_scope``): one call for a worker thread."""
    with read_scope(engine) as session:
        return query(session, *args, **kwargs)
