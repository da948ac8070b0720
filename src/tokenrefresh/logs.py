"""Logging to stderr: short human lines by default, one JSON object per line for shippers.

Nothing logged anywhere in tokenrefresh carries a token: accounts are named by id and
open_id, TikTok's texts are scrubbed by the client, and driver errors are logged without
their SQL parameters.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["INVOCATION_ID", "configure_logging"]

# One id per process, on every JSON log line, to group the lines of one run.
INVOCATION_ID = uuid.uuid4().hex[:12]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each record (tests swap it)."""

    @property
    def stream(self) -> TextIO:
        return stream_override or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


stream_override: TextIO | None = None


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": INVOCATION_ID,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    *, verbose: int = 0, quiet: bool = False, json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """-q: errors only; default: warnings; -v: info; -vv: debug (ours and the libraries')."""
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    global stream_override
    stream_override = stream
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if verbose >= 2 else max(level, logging.WARNING))
    logging.getLogger("tokenrefresh").setLevel(level)
