"""Human durations for options: `90m`, `1h30m`, `45s`, `2d`; `0` alone needs no unit."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")


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
    return timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts))


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
