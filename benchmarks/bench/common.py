"""Constants, formatting and statistics shared by every benchmark."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONFIG_PREFIXES = ("TOKENREFRESH_", "TIKTOK_")
WINDOW = timedelta(minutes=90)  # the CLI's default --window
MAX_RETRIES = 2  # measurements repeated when a run is interrupted from outside


def default_admin_url() -> str:
    """Where a benchmark may create its database: $TOKENREFRESH_TEST_DATABASE_URL or local."""
    return os.environ.get("TOKENREFRESH_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**NO**")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def code_block(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```"


class BenchmarkError(RuntimeError):
    """A benchmark could not measure what it should (a command failed, counts were off)."""


class Interrupted(BenchmarkError):
    """A refresh run was stopped from outside (its database connections were terminated).

    Seen when another process on the same server terminates backends (e.g. a test that
    kills every holder of an advisory lock): the measurement is repeated, and said so.
    """
