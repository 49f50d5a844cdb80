"""``HttpRequestStats``: the HTTP metrics as Prometheus reads them."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fwa_api.middleware.metrics import HttpRequestStats


def scrape(stats: HttpRequestStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counts_and_cumulative_duration_buckets() -> None:
    stats = HttpRequestStats(buckets=(0.01, 0.1, 1.0))
    stats.record("GET", "/api/cases/{case_id}", 200, 0.005)
    stats.record("GET", "/api/cases/{case_id}", 200, 0.05)
    stats.record("GET", "/api/cases/{case_id}", 404, 0.1)  # on a bound: counted in that bucket
    stats.record("GET", "/api/cases/{case_id}", 200, 3.0)
    samples = scrape(stats)

    def count(status: str) -> float:
        labels = (("method", "GET"), ("path", "/api/cases/{case_id}"), ("status_code", status))
        return samples[("http_requests_total", labels)]

    assert (count("200"), count("404")) == (3, 1)
    route = (("method", "GET"), ("path", "/api/cases/{case_id}"))
    buckets = {
        bound: samples[
            ("http_request_duration_seconds_bucket", tuple(sorted((*route, ("le", bound)))))
        ]
        for bound in ("0.01", "0.1", "1.0", "+Inf")
    }
    assert buckets == {"0.01": 1, "0.1": 3, "1.0": 3, "+Inf": 4}
    assert samples[("http_request_duration_seconds_count", route)] == 4
    assert abs(samples[("http_request_duration_seconds_sum", route)] - 3.155) < 1e-9


def test_unknown_methods_share_one_label_value() -> None:
    stats = HttpRequestStats()
    stats.record("BREW", "<unmatched>", 405, 0.001)
    stats.record("PROPFIND", "<unmatched>", 405, 0.001)
    labels = (("method", "OTHER"), ("path", "<unmatched>"), ("status_code", "405"))
    assert scrape(stats)[("http_requests_total", labels)] == 2
