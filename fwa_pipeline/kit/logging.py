"""JSON log lines for the pipeline and the API, and the request id every line carries.

One line per record: ``timestamp``, ``level``, ``logger``, ``message``, ``request_id`` (null outside
a request), then whatever the caller passed in ``extra=`` (``duration_ms`` on access lines), then
``exception`` when there is one. Callers must never put PHI or secrets in messages or extras.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TextIO

# Set by the API's request-context middleware; anyio copies it into worker threads, so sync
# routes and DB code log with the right id too.
request_id_var: ContextVar[str | None] = ContextVar("fwa_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``. uvicorn adds
# ``color_message``, the message again with terminal colour codes.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The API writes a line per request: format the date part once a second, not per line.
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry)


def configure_logging(
    level: str | int = "INFO", *, stream: TextIO | None = None, reroute: Iterable[str] = ()
) -> logging.Handler:
    """Send every record through one JSON handler on the root logger (idempotent).

    ``reroute`` names loggers that installed handlers of their own (uvicorn's, for instance):
    those handlers are dropped so the records reach the root handler as JSON.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in reroute:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


class LogThrottle:
    """Lets one event through per ``interval`` seconds and counts those it held back, so an
    outage logs a warning a minute instead of one per request."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._held = 0

    def ready(self) -> int | None:
        """The number of events held back since the last one let through, or None to hold."""
        now = self._clock()
        if now < self._next:
            self._held += 1
            return None
        held, self._held, self._next = self._held, 0, now + self.interval
        return held

    def warning(self, logger: logging.Logger, message: str, *args: object) -> None:
        """Log ``message`` unless it is held back, with the number held back since the last
        one (``suppressed_warnings``)."""
        held = self.ready()
        if held is not None:
            logger.warning(message, *args, extra={"suppressed_warnings": held})
