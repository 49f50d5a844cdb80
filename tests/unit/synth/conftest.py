"""One generated batch per test session (12,000 claims: seconds to make, big enough for every
scheme and for the peer statistics), plus its files read back as a rule engine would."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwa_pipeline.synth import generate
from tests.unit.synth.oracle import Batch

N_CLAIMS = 12_000
SEED = 3


@pytest.fixture(scope="session")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("synth")
    generate(directory, n_claims=N_CLAIMS, seed=SEED)
    return directory


@pytest.fixture(scope="session")
def batch(batch_dir: Path) -> Batch:
    return Batch.read(batch_dir)
