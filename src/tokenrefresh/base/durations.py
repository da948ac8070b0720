"""Human durations for options: `90m`, `1h30m`, `45s`, `2d`; `0` alone needs no unit."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = [
    "MAX_DURATION",
    "Duration",
    "Seconds",
    "check_duration",
    "format_duration",
    "parse_duration",
    "parse_seconds",
]

# The longest duration any option, variable or library argument takes: ten years, beyond
# every token lifetime and retention anyone needs, far from where date arithmetic overflows.
MAX_DURATION = timedelta(days=3650)

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")
_SECONDS = re.compile(r"(\d*)(\.\d+)?")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text (units d, h, m, s); `0` alone needs no unit.

    A bare number is refused: `--window 90` meaning 90 seconds, where 90 minutes was
    meant, is too easy a slip. The error suggests both readings.
    """
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        if int(cleaned) == 0:
            return timedelta(0)
        raise ValueError(
            f"{text.strip()!r} has no unit: write {cleaned}s for seconds or {cleaned}m for "
            "minutes (units: d, h, m, s)"
        )
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration: use e.g. 90m, 1h30m, 45s or 2d")
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"{text!r} is not a duration: a unit appears twice")
    # Each number is checked first: `99999999999999999999d` must not become a huge int.
    if any(len(number) > 12 for number, _ in parts):
        raise ValueError(_too_long(text.strip()))
    return check_duration(
        timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts)),
        text.strip(),
    )


def parse_seconds(text: str) -> float:
    """Seconds, for the options that took a plain number of seconds before durations
    (`--http-timeout`, `events deliver --budget`): a duration (`20s`, `1m30s`), or a bare
    number, which means seconds there (`20`, `0.5`) so that existing scripts keep working.
    A duration's smallest unit is the second; below it, write a bare number (`0.5`)."""
    cleaned = text.strip()
    number = _SECONDS.fullmatch(cleaned)
    if cleaned and number:
        if len(number.group(1)) > 12:  # as for durations: no huge number reaches float()
            raise ValueError(_too_long(cleaned))
        return check_duration(timedelta(seconds=float(cleaned)), cleaned).total_seconds()
    try:
        return parse_duration(cleaned).total_seconds()
    except ValueError as error:
        if "is not a duration" not in str(error):
            raise
        raise ValueError(
            f"{text!r} is not a duration: use e.g. 20s, 1m30s, or a number of seconds (20, 0.5)"
        ) from None


def check_duration(value: timedelta, shown: str | None = None) -> timedelta:
    """`value` if it is at most MAX_DURATION; else ValueError naming the maximum."""
    if value > MAX_DURATION:
        raise ValueError(_too_long(shown if shown is not None else format_duration(value)))
    return value


def _too_long(shown: str) -> str:
    return f"{shown!r} is longer than the maximum, {format_duration(MAX_DURATION)} (10 years)"


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, shortest form first: `1h30m`, `45s`, `0s`."""
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    sign = "-" if remaining < 0 else ""
    remaining = abs(remaining)
    out = []
    for unit, seconds in _UNITS.items():
        count, remaining = divmod(remaining, seconds)
        if count:
            out.append(f"{count}{unit}")
    return sign + "".join(out)


class Duration(timedelta):
    """A timedelta that shows itself as it is written on the command line (`1h30m`): the
    defaults of duration options, so that `--help` says `[default: 1h30m]`."""

    def __str__(self) -> str:
        return format_duration(self)


class Seconds(float):
    """A number of seconds that shows itself as a duration (`20s`, `0.5s`): the defaults of
    the options that take seconds, so that `--help` says `[default: 20s]`."""

    def __str__(self) -> str:
        return f"{float(self):g}s"
