"""The relational store: models, engines and sessions, bulk I/O, field encryption, queries."""
