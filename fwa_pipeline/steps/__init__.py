"""The pipeline's steps as plain functions, testable without Dagster: the run's scope, the
claim frames a run passes along, the history it reads and its commit. The assets
(``fwa_pipeline.defs.assets``) read their inputs, call these and describe what came out."""
