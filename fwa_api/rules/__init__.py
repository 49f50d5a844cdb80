"""The rule catalogue of a workspace: parameters in effect and hits."""
