"""Small utilities both apps share (no imports from ``fwa_api``: the arrow runs the other way)."""
