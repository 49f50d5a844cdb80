"""Providers (rendering, pharmacy, prescriber): claims, rule hits and cases."""
