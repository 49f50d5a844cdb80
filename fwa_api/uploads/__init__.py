"""Uploads: contract CSV files landed as one batch."""
