"""The claims store as a resource every asset, check, hook and sensor shares.

:class:`StoreResource`: the relational store (engine, settings, PHI cipher). Fields left unset come
from the ``FWA_`` environment through :class:`~fwa_pipeline.settings.Settings`, so a production
database URL or key never shows in Dagster's UI; tests set them explicitly. The run's own
configuration resource is ``runs.config.PipelineRunConfig``.
"""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from fwa_pipeline.settings import Settings
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.store.pii import cipher_from_settings


class StoreResource(dg.ConfigurableResource):
    """The claims store. Unset fields are read from the environment (``FWA_*``)."""

    environment: str | None = None
    database_url: str | None = None
    data_dir: str | None = None
    encryption_key: str | None = None

    _settings: Settings | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> "StoreResource":
        return cls(
            environment=settings.environment.value,
            database_url=settings.database_url.get_secret_value() or None,
            data_dir=str(settings.data_dir),
            encryption_key=settings.encryption_key.get_secret_value() or None,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster sets up a copy of the resource for each run (and sensor tick): Settings are
        # read from the environment once for it, not on each of the dozens of calls a run makes.
        self._settings = self._read_settings()

    def settings(self) -> Settings:
        # Outside a run (the CLI, the benchmark) nothing set it up: read the environment as
        # it is now.
        return self._settings or self._read_settings()

    def _read_settings(self) -> Settings:
        fields = {
            "environment": self.environment,
            "database_url": self.database_url,
            "data_dir": self.data_dir,
            "encryption_key": self.encryption_key,
        }
        return Settings(**{k: v for k, v in fields.items() if v is not None})

    def engine(self) -> Engine:
        return get_engine(self.settings())

    def cipher(self) -> FieldCipher | None:
        return cipher_from_settings(self.settings())

    def io_dir(self) -> Path:
        """Where the run's intermediate frames are kept (see ``defs.io``)."""
        return self.settings().data_dir / "dagster_io"
