"""Claims: how each was scored (its provenance)."""
