"""Loading a batch: the entry points of the CLI (a directory) and the API (uploaded files).

Every file is read within the size limit and parsed; all problems of all files are reported
together, and a batch with any problem stores nothing. The claims files, the bulk of a batch,
are parsed while the other files land, so that the database works meanwhile: a problem in them
rolls that transaction back. A problem in any other file rejects the batch before anything is
sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath
from typing import BinaryIO

from sqlalchemy import Engine

from fwa_pipeline.ingest.contract import FILES, FileSpec, Role
from fwa_pipeline.ingest.land import LoadResult, land
from fwa_pipeline.ingest.parse import Limits, ParsedFile, parse_file
from fwa_pipeline.ingest.problems import BatchRejected, Problem
from fwa_pipeline.settings import Settings

FileSource = BinaryIO | bytes | Path
# Workspace names double as Dagster partition keys and URL path segments.
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BATCH = "batch"  # the "file" of problems about the batch as a whole


def load_directory(
    engine: Engine, settings: Settings, workspace: str, directory: Path, source: str = "cli"
) -> LoadResult:
    """Load every file of ``directory`` as one batch (hidden files and subdirectories are
    ignored; any other file must be a contract file)."""
    files: dict[str, FileSource] = {
        path.name: path
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }
    return load_files(engine, settings, workspace, files, source=source)


def load_files(
    engine: Engine,
    settings: Settings,
    workspace: str,
    files: Mapping[str, FileSource],
    source: str = "api",
) -> LoadResult:
    """Validate ``files`` (contract file name -> binary stream, bytes or path) and land them as
    one batch of ``workspace`` (created if new). Raises :class:`BatchRejected`, having stored
    nothing, when any rule of the data contract rejects any file.

    Names are matched case-insensitively, without any directory part. Streams are read (at
    most the size limit plus one byte), not closed.
    """
    problems: list[Problem] = []
    if not WORKSPACE_NAME.fullmatch(workspace):
        problems.append(
            Problem(
                BATCH,
                "the workspace name must be 1-64 letters, digits, '_', '.' or '-', starting "
                "with a letter or digit",
            )
        )
    specs = _specs(files, problems)
    limits = Limits.from_settings(settings)
    # {given name: (the parsed file or None, its problems)}
    results: dict[str, tuple[ParsedFile | None, list[Problem]]] = {}

    def check(names: Sequence[str]) -> list[ParsedFile]:
        """Parse the files ``names``, then raise if any file checked so far has a problem."""
        for given in names:
            results[given] = _parse(specs[given], files[given], limits)
        found = problems + [p for given in specs if given in results for p in results[given][1]]
        if found:
            raise BatchRejected(found)
        return [file for given in names if (file := results[given][0]) is not None]

    # Claims files are checked in a thread while the other files land (see the module doc).
    claims = [given for given, spec in specs.items() if spec.role is Role.CLAIMS]
    try:
        others = check([given for given in specs if given not in claims])
    except BatchRejected:
        check(claims)  # raises, listing the problems of every file
        raise
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(check, claims)
        return land(engine, settings, workspace, others, checked.result, source)


def _parse(
    spec: FileSpec, source: FileSource, limits: Limits
) -> tuple[ParsedFile | None, list[Problem]]:
    problems: list[Problem] = []
    data = _read(spec, source, limits.max_bytes, problems)
    if data is None:
        return None, problems
    try:
        return parse_file(spec, data, limits), problems
    except BatchRejected as exc:
        return None, exc.problems


def _specs(files: Mapping[str, FileSource], problems: list[Problem]) -> dict[str, FileSpec]:
    """The contract file of each given name, problems for unknown or repeated ones."""
    specs: dict[str, FileSpec] = {}
    for given in files:
        name = PurePath(given).name.strip().lower()
        spec = FILES.get(name)
        if spec is None:
            problems.append(
                Problem(
                    given,
                    "not a contract file; a batch holds only " + ", ".join(FILES),
                )
            )
        elif spec in specs.values():
            problems.append(Problem(given, f"{spec.name} is given more than once"))
        else:
            specs[given] = spec
    if not any(spec.role is Role.CLAIMS for spec in specs.values()):
        claims = [s.name for s in FILES.values() if s.role is Role.CLAIMS]
        problems.append(
            Problem(BATCH, f"a batch must contain at least one claims file ({' or '.join(claims)})")
        )
    return specs


def _read(
    spec: FileSpec, source: FileSource, max_bytes: int, problems: list[Problem]
) -> bytes | None:
    """The file's bytes, or None (and a problem) when it is over the size limit."""
    if isinstance(source, Path):
        size = source.stat().st_size
        if size <= max_bytes:
            return source.read_bytes()
        over = f"{size:,} bytes"
    elif isinstance(source, bytes):
        if len(source) <= max_bytes:
            return source
        over = f"{len(source):,} bytes"
    else:
        # Never more than the limit plus the one byte that shows the file is over it.
        data = source.read(max_bytes + 1)
        if len(data) <= max_bytes:
            return data
        over = f"over {max_bytes:,} bytes"
    problems.append(
        Problem(
            spec.name, f"the file is {over}; the limit is {max_bytes:,} bytes (FWA_MAX_UPLOAD_MB)"
        )
    )
    return None
