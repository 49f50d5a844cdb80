"""Dagster: partitions, resources, IO, assets, checks, jobs, sensors, schedules, run mirror.

Nothing is imported here, so the API can import ``run_mirror`` without loading the definitions;
launching, the run tags and the API's view of jobs live in ``fwa_pipeline.runs``.
"""
