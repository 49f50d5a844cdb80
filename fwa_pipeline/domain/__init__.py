"""Pure domain logic: DataFrames in, DataFrames out. No Dagster, no HTTP, no database."""
