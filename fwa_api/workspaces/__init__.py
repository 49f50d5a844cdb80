"""Workspaces: the caller's workspaces, and each one's versioned pipeline configuration."""
