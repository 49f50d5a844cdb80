"""Store metrics for Prometheus and the ``/metrics`` route that serves every metric."""
