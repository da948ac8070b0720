"""Options several commands share, and the parsers of durations and shards.

Every default comes from `base/defaults.py`, which the services read too.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenrefresh.base import defaults
from tokenrefresh.base.durations import parse_duration, parse_seconds
from tokenrefresh.errors import UsageError
from tokenrefresh.storage.records import Shard

__all__ = [
    "AccountArgument",
    "AsJson",
    "EventRetention",
    "HttpTimeout",
    "LogFormat",
    "LogFormatOption",
    "MetricsFile",
    "OpenIdOption",
    "Quiet",
    "Verbose",
    "account_key",
    "as_duration",
    "as_positive_duration",
    "as_shard",
    "duration_option",
    "seconds_option",
    "window_option",
]


class LogFormat(StrEnum):
    human = "human"
    json = "json"


def as_duration(text: str | timedelta) -> timedelta:
    if isinstance(text, timedelta):  # the default, already parsed
        return text
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def as_positive_duration(text: str | timedelta) -> timedelta:
    value = as_duration(text)
    if value <= timedelta(0):
        raise typer.BadParameter("must be longer than 0s")
    return value


def seconds_parser(minimum: float, maximum: float | None = None) -> Any:
    """The parser of a SECONDS-or-DURATION option: `20s`, `1m`, or a bare number of seconds
    (`20`, `0.5`: these options took plain seconds before durations), within the bounds."""

    def as_seconds(text: str | float) -> float:
        if isinstance(text, int | float):  # the default, already a number
            return float(text)
        try:
            value = parse_seconds(text)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        if value < minimum:
            raise typer.BadParameter(f"{text.strip()!r} is less than the minimum, {minimum:g}s")
        if maximum is not None and value > maximum:
            raise typer.BadParameter(f"{text.strip()!r} is more than the maximum, {maximum:g}s")
        return value

    return as_seconds


def seconds_option(
    help_text: str,
    *,
    minimum: float,
    maximum: float | None = None,
    envvar: str | None = None,
) -> Any:
    """A DURATION option that also takes a bare number of seconds; its value is in seconds,
    its default a `Seconds`, shown as written (`[default: 20s]`)."""
    return typer.Option(
        parser=seconds_parser(minimum, maximum),
        envvar=envvar,
        metavar="DURATION",
        show_default=True,
        help=help_text,
    )


def as_shard(text: str) -> Shard:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise typer.BadParameter(f"{text!r} is not a shard: use K/N with 0 <= K < N, e.g. 0/4")
    return Shard(int(index), int(count))


Verbose = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, metavar="", help="More log output on stderr (-vv: debug)."
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing unless something went wrong.")
]
AsJson = Annotated[
    bool,
    typer.Option("--json", help="Print stable JSON (shapes in docs/commands.md); never a token."),
]
HttpTimeout = Annotated[
    float,
    seconds_option(
        "How long one call to TikTok may take, connect to last byte: 20s, 1m, or seconds "
        "(20, 0.5); from 0.1s to 60s.",
        minimum=defaults.MIN_HTTP_TIMEOUT,
        maximum=defaults.MAX_HTTP_TIMEOUT,
        envvar="TOKENREFRESH_HTTP_TIMEOUT",
    ),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="TOKENREFRESH_LOG_FORMAT",
        metavar="human|json",
        help="Log lines on stderr: human, or one JSON object per line.",
    ),
]


def duration_option(help_text: str, *, envvar: str | None = None, zero_ok: bool = False) -> Any:
    """A DURATION option (`90m`, `1h30m`), its default shown as written; longer than 0s
    unless `zero_ok`."""
    return typer.Option(
        parser=as_duration if zero_ok else as_positive_duration,
        envvar=envvar,
        metavar="DURATION",
        show_default=True,
        help=help_text,
    )


def window_option(help_text: str) -> Any:
    """--window, for `refresh` (what it refreshes) and `status` (what it counts)."""
    return duration_option(help_text, envvar="TOKENREFRESH_WINDOW")


EventRetention = Annotated[
    timedelta,
    duration_option(
        "Give up events not delivered within this long; prune delivered ones after it.",
        envvar="TOKENREFRESH_EVENT_RETENTION",
    ),
]
MetricsFile = Annotated[
    Path | None,
    typer.Option(
        envvar="TOKENREFRESH_METRICS_FILE",
        metavar="PATH",
        dir_okay=False,
        help="Write Prometheus metrics here (atomically), for node_exporter's textfile collector.",
    ),
]


AccountArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="ACCOUNT",
        show_default=False,
        help="The account: a number is its id, anything else its open_id "
        "(an open_id of digits only: give it with --open-id).",
    ),
]
OpenIdOption = Annotated[
    str | None,
    typer.Option(
        "--open-id",
        metavar="OPEN_ID",
        help="The account by its open_id, always (even one of digits only).",
    ),
]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="NAME",
        help="The app (an [apps.NAME] of TOKENREFRESH_CONFIG); may be left out when only "
        "one app is configured.",
    ),
]
_NUMBER = re.compile(r"[0-9]+")


def account_key(account: str | None, open_id: str | None) -> tuple[int | None, str | None]:
    """(id, None) or (None, open_id) for an ACCOUNT argument or --open-id, exactly one of
    them: a number (ASCII digits) is an id, anything else an open_id; --open-id is always
    an open_id."""
    if (account is None) == (open_id is None):
        raise UsageError("give an account (id or open_id) or --open-id, not both")
    if open_id is not None:
        return None, open_id
    assert account is not None
    if _NUMBER.fullmatch(account):
        return int(account), None
    return None, account
