"""Logging to stderr: short human lines by default, one JSON object per line for shippers.

Nothing logged anywhere in tokenrefresh carries a token: accounts are named by id and
open_id, TikTok's texts are scrubbed by the client, and driver errors are logged without
their SQL parameters. As a last line of defence, both formats scrub every record (and its
exception) of the registered secrets and of every URL's query string (a provider that takes
its credentials or a token in the query string, logged by urllib3 at -vv), and write it as
one line a terminal cannot misread.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from tokenrefresh.base.scrub import safe_text, scrub

__all__ = ["INVOCATION_ID", "configure_logging", "set_run_id", "terminal_safe_json"]

# One id per process, on every JSON log line, to group the lines of one run.
INVOCATION_ID = uuid.uuid4().hex[:12]
# The run's number in the runs table (what `status` and `accounts show` call it), once the
# run is recorded; JSON log lines carry it as `run_id`.
_RUN_ID: list[int | None] = [None]


def set_run_id(run_id: int | None) -> None:
    """From now on, JSON log lines name this run (the number `status` shows)."""
    _RUN_ID[0] = run_id


# What json.dumps(ensure_ascii=False) leaves raw that a terminal may act on: DEL and the C1
# controls (U+009B is a CSI on some terminals), bidi marks, overrides and isolates, the
# line and paragraph separators, a byte order mark, and lone surrogates (not UTF-8).
_RAW_IN_JSON = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff]"
)


def terminal_safe_json(value: Any, *, indent: int | None = None) -> str:
    """json.dumps, readable (non-ASCII kept) yet with nothing a terminal would act on.

    Those characters can only stand inside JSON strings, so `\\uXXXX` keeps the document
    valid and equal to `value` when parsed.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each record (tests swap it)."""

    @property
    def stream(self) -> TextIO:
        return stream_override or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


stream_override: TextIO | None = None

# A URL's (or a request line's path's) query string: `/token?app_secret=...` -> `/token?***`.
_QUERY = re.compile(r"((?:[a-z][a-z0-9+.-]*://|/)[^\s\"'?]*)\?[^\s\"'#]+", re.IGNORECASE)


def _without_queries(text: str) -> str:
    return _QUERY.sub(r"\1?***", text)


class _ScrubbingFormatter(logging.Formatter):
    """Base of both formats: a record's message and exception, scrubbed of every secret."""

    def message(self, record: logging.LogRecord) -> str:
        return scrub(_without_queries(record.getMessage()))

    def exception(self, record: logging.LogRecord) -> str | None:
        if not record.exc_info:
            return None
        return scrub(_without_queries(self.formatException(record.exc_info)))


class HumanFormatter(_ScrubbingFormatter):
    """`level: message` on one line (newlines and control characters escaped, `\\x0a`); a
    traceback, only logged for -vv, follows on lines of its own, each one made safe."""

    def format(self, record: logging.LogRecord) -> str:
        text = safe_text(f"{record.levelname.lower()}: {self.message(record)}")
        exception = self.exception(record)
        if exception:
            text += "\n" + safe_text(exception, keep_newlines=True)
        return text


class JsonFormatter(_ScrubbingFormatter):
    """One JSON object per line; strings keep their text, escaped as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": _RUN_ID[0],
            "invocation_id": INVOCATION_ID,
            "message": self.message(record),
        }
        exception = self.exception(record)
        if exception:
            entry["exception"] = exception
        return terminal_safe_json(entry)


def configure_logging(
    *, verbose: int = 0, quiet: bool = False, json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """-q: errors only; default: warnings; -v: info; -vv: debug (ours and the libraries').

    `stream` replaces stderr (for tests; the CLI always logs to stderr).
    """
    set_run_id(None)  # a new command: no run recorded yet
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
