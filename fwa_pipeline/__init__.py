"""The data side of the FWA platform: store, ingest, synthetic data, domain logic, Dagster."""
