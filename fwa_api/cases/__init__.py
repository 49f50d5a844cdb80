"""Investigation cases: list, detail, status changes and notes."""
