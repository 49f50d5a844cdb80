"""Pieces every resource package shares: pagination, read sessions, identifiers."""
