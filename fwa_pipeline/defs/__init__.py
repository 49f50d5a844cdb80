"""Dagster: partitions, resources, IO, assets, checks, hooks, jobs, sensors, schedules.

Nothing is imported here; launching, the run record, the run tags and the API's view of jobs live
in ``fwa_pipeline.runs``, which the API imports without loading the definitions.
"""
