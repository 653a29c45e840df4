"""Logging set-up: JSON lines with stable keys in production, plain text for a terminal.

Modules log with ``logging.getLogger(__name__)`` and pass context in ``extra`` with the stable
keys below; the JSON formatter lifts them to top-level fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

STABLE_KEYS = (
    "tenant_id",
    "subscription_id",
    "alert_id",
    "sink",
    "stream_id",
    "stream",
    "role",
    "reason",
    "status",
    "attempt",
    "duration_ms",
    "count",
    "request_id",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the stable keys, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in STABLE_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{k}={record.__dict__[k]}" for k in STABLE_KEYS if record.__dict__.get(k) is not None
        ]
        return f"{line} [{' '.join(extras)}]" if extras else line


def setup_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "msal", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
