"""The demo-data generator: a synthetic, contract-conformant claims batch with planted FWA
schemes and their ground truth (``labels.csv``). See :func:`generate`."""

from fwa_pipeline.synth.common import ANCHOR_DATE
from fwa_pipeline.synth.generate import generate

__all__ = ["ANCHOR_DATE", "generate"]
