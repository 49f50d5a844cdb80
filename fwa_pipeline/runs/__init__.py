"""Launching, recording and the Dagster home: runs' tags, the in-process launcher, the run record
(``PipelineRun``/``PipelineRequest``) and the API's view of jobs. Nothing here is a Dagster
definition, so the API and the CLI import it without loading the definitions."""
