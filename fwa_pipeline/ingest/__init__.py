"""The data contract as code: parse, sanitise, validate and land a batch of CSV files.

``load_directory`` (the CLI) and ``load_files`` (the API's upload endpoint) validate every file
against ``contract`` and land the batch in one transaction, or raise ``BatchRejected`` listing
every problem, having stored nothing.
"""

from fwa_pipeline.ingest.land import LoadResult
from fwa_pipeline.ingest.loader import load_directory, load_files
from fwa_pipeline.ingest.problems import BatchRejected, Problem

__all__ = ["BatchRejected", "LoadResult", "Problem", "load_directory", "load_files"]
