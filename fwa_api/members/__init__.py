"""Members: the record, PHI for the roles that may see it, and their cases."""
