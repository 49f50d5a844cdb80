"""Pipeline jobs and runs: enqueue, follow and cancel jobs, read runs."""
