"""Log lines: JSON objects (or plain text), with the request or job they belong to.

Used by the API and by the training job inside Ray, so it depends on nothing web.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request or job it belongs to."""

    _EXTRA = ("route", "status", "duration_ms", "schedule_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        if jid := job_id.get():
            entry["job_id"] = jid
        for key in self._EXTRA:
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_FORMATS = {
    "text": logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
    # For a person at a terminal: `make up`, serve.py, the dataset seed.
    "console": logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"),
}


def configure(fmt: Literal["json", "text", "console"], *, level: int = logging.INFO) -> None:
    """The one logging set-up of every process the platform starts (the API, training
    jobs, `make up`, serve.py): every logger, uvicorn's included, through one handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else _FORMATS[fmt])
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # one line per request is ours
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it would log every call we make
