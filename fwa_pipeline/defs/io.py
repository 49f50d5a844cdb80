"""How claim frames travel between assets: as versioned Arrow files (``steps.frame_files``), one
directory per asset and workspace partition, one version per run.

Within a run, the files are written by a background thread while the next steps compute (Arrow
writes with the GIL released): on a million claims that takes half a second off the run. A step
that loads a frame still being written gets it from the Arrow tables in memory, converted exactly
as from the file; once written, the tables are dropped and the file is mapped. A write that fails
removes the asset's pointer, so no later run or re-execution reads an older copy in its place,
and the failure fails the next step that loads the frame and is reported at the run's end.
"""

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.steps.frame_files import (
    POINTER,
    Encoded,
    Frames,
    load,
    private_dir,
    publish,
)

# Input metadata: the columns an asset reads of an upstream frame, or, of a dict of frames, a
# mapping of frame name to its columns (frames it does not name are read whole).
COLUMNS = "columns"


@dataclass
class _Write:
    """An output being written in the background; ``encoded`` is dropped once it is on disk."""

    encoded: Encoded | None
    future: Future[None]


def _publish_or_invalidate(directory: Path, version: str, encoded: Encoded) -> None:
    try:
        publish(directory, version, encoded)
    except BaseException:
        # Readers would otherwise find the previous run's frames as if they were this run's.
        (directory / POINTER).unlink(missing_ok=True)
        raise


class ArrowFramesIOManager(dg.ConfigurableIOManager):
    """Frames between assets as Arrow IPC files under ``<data_dir>/dagster_io`` (or
    ``base_dir``), one directory per asset and workspace partition, versioned by run. Within a
    run, files are written behind the steps (see the module's docstring); used outside a run
    (no ``setup_for_execution``), it writes before returning."""

    store: dg.ResourceDependency[StoreResource]
    base_dir: str | None = None

    _writer: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _writes: dict[Path, _Write] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fwa-io-writer")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        writes, self._writes = self._writes, {}
        failed = [d for d, w in writes.items() if w.future.exception() is not None]
        if failed:
            # Dagster reports a teardown failure as an engine event on the run.
            raise RuntimeError(f"frames not written (their pointers are removed): {failed}")

    def _asset_dir(self, context: dg.OutputContext | dg.InputContext) -> Path:
        # Owner-only, also when an older release created it readable by others.
        base = private_dir(Path(self.base_dir) if self.base_dir else self.store.io_dir())
        partition = context.asset_partition_key if context.has_asset_partitions else "_all"
        return base.joinpath(partition, *context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Frames) -> None:
        directory = self._asset_dir(context)
        encoded = Encoded.of(obj)  # here, not in the writer: pandas is not thread-safe
        if self._writer is None:
            publish(directory, context.run_id, encoded)
            return
        write = _Write(
            encoded, self._writer.submit(_publish_or_invalidate, directory, context.run_id, encoded)
        )
        write.future.add_done_callback(partial(_written, write))
        self._writes[directory] = write

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | Frames:
        directory = self._asset_dir(context)
        # An input may name the columns it reads (AssetIn(metadata={"columns": [...]})).
        columns = context.definition_metadata.get(COLUMNS)
        write = self._writes.get(directory)
        if write is not None:
            encoded = write.encoded  # read once: the writer's callback may drop it
            if encoded is not None and not write.future.done():
                return encoded.frames(columns)
            if write.future.exception() is not None:
                raise dg.Failure(
                    f"{context.asset_key.to_user_string()} could not be written",
                    # For operators, in the Dagster UI; job statuses show the description only.
                    metadata={"error": dg.MetadataValue.text(repr(write.future.exception()))},
                )
        found = load(directory, columns)
        if found is None:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()} has not been materialised for this "
                "workspace yet: materialise it (or the whole pipeline) first"
            )
        return found[1]


def _written(write: _Write, future: Future[None]) -> None:
    if future.exception() is None:
        write.encoded = None
