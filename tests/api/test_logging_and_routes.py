"""Unit tests: the shared JSON log format (``fwa_pipeline.kit.logging``) and route-template
resolution."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from fastapi import APIRouter, FastAPI
from starlette.staticfiles import StaticFiles

from fwa_api.middleware.route_templates import UNMATCHED, RouteTemplates, route_path
from fwa_pipeline.kit.logging import JsonFormatter, LogThrottle, configure_logging, request_id_var


def formatted(record: logging.LogRecord) -> dict[str, object]:
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def make_record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fwa.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_line_has_the_fields_and_the_request_id_of_its_context() -> None:
    assert formatted(make_record("hello %s", "world"))["request_id"] is None
    token = request_id_var.set("req-7")
    try:
        entry = formatted(make_record("hello %s", "world", duration_ms=1.5))
    finally:
        request_id_var.reset(token)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "fwa.test"
    assert entry["request_id"] == "req-7"
    assert entry["duration_ms"] == 1.5
    assert str(entry["timestamp"]).endswith("+00:00")
    assert "args" not in entry and "msg" not in entry and "color_message" not in entry


def test_exceptions_are_one_json_field() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord(
            "fwa.test", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    entry = formatted(record)
    assert "Traceback" in str(entry["exception"]) and "ValueError: bad" in str(entry["exception"])


def test_configure_logging_is_idempotent_and_reroutes_named_loggers() -> None:
    root = logging.getLogger()
    noisy = logging.getLogger("tests.noisy")
    noisy.addHandler(logging.StreamHandler(io.StringIO()))
    noisy.propagate = False
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging("INFO", stream=first)
        configure_logging("DEBUG", stream=second, reroute=["tests.noisy"])
        assert sum(isinstance(h.formatter, JsonFormatter) for h in root.handlers) == 1
        noisy.debug("from a library")
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["message"] == "from a library"
    finally:
        for handler in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
            root.removeHandler(handler)
        noisy.handlers.clear()
        noisy.propagate = True


def test_log_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = LogThrottle(60.0, clock=lambda: now[0])
    assert throttle.ready() == 0
    assert [throttle.ready() for _ in range(3)] == [None, None, None]
    now[0] = 60.0
    assert throttle.ready() == 3
    assert throttle.ready() is None


def test_a_throttled_warning_carries_the_number_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = LogThrottle(60.0, clock=lambda: now[0])
    logger = logging.getLogger("tests.throttled")
    with caplog.at_level(logging.WARNING, logger="tests.throttled"):
        for _ in range(3):
            throttle.warning(logger, "store unavailable (%s)", "OperationalError")
        now[0] = 60.0
        throttle.warning(logger, "store unavailable (%s)", "TimeoutError")
    assert [(r.getMessage(), r.suppressed_warnings) for r in caplog.records] == [
        ("store unavailable (OperationalError)", 0),
        ("store unavailable (TimeoutError)", 2),
    ]


def test_route_templates_carry_every_prefix() -> None:
    app = FastAPI()
    cases = APIRouter()
    notes = APIRouter(prefix="/{case_id}/notes")

    @cases.get("/{case_id}")
    def get_case(case_id: int) -> None: ...

    @notes.post("")
    def add_note(case_id: int) -> None: ...

    @app.get("/api/health")
    def health() -> None: ...

    cases.include_router(notes)
    app.include_router(cases, prefix="/api/cases")
    app.mount("/static", StaticFiles(directory="."), name="static")
    templates = RouteTemplates(lambda: app.routes)
    assert templates.resolve("GET", "/api/cases/12") == "/api/cases/{case_id}"
    assert templates.resolve("POST", "/api/cases/12/notes") == "/api/cases/{case_id}/notes"
    assert templates.resolve("DELETE", "/api/cases/12") == "/api/cases/{case_id}"  # a 405
    assert templates.resolve("GET", "/static/app.js") == "/static/{path}"
    assert templates.resolve("GET", "/api/cases") == UNMATCHED
    assert templates.resolve("GET", "/wp-login.php") == UNMATCHED


def test_route_path_strips_the_root_path() -> None:
    assert route_path({"path": "/fwa/api/health", "root_path": "/fwa"}) == "/api/health"
    assert route_path({"path": "/fwa", "root_path": "/fwa"}) == "/"
    assert route_path({"path": "/api/health", "root_path": ""}) == "/api/health"
