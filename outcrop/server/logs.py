"""Structured logs: one JSON object a line, carrying the request ID of the call that logged it."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("outcrop_request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        rid = REQUEST_ID.get()
        if rid is not None:
            entry["requestId"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str, fmt: str) -> dict[str, object]:
    """Our loggers and uvicorn's through one handler; returns uvicorn's `log_config`."""
    formatter = "outcrop.server.logs.JsonFormatter" if fmt == "json" else "logging.Formatter"
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr"}},
        "loggers": {"": {"handlers": ["default"], "level": level.upper()},
                    "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
                    "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True}},
    }
