"""Every default a user can change, in one place: the CLI's options and the services read
these, so `--help`, the README and the behaviour cannot drift apart."""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "ATTEMPTS_SHOWN",
    "CONCURRENCY",
    "HTTP_TIMEOUT",
    "MAX_AGE",
    "MAX_RUNTIME",
    "RECONNECT_LISTED",
    "RETENTION",
    "WINDOW",
]

# With 2-hour access tokens and cron every 30 minutes: an account is first taken with
# 60-90 minutes left; if that tick is missed (or its run is slow), the next one still
# finds 30-60 minutes left, enough for a full run of up to MAX_RUNTIME.
WINDOW = timedelta(minutes=90)
# 8 calls in flight at ~100 ms each is ~80 refreshes/s: 100,000 accounts with 2-hour
# tokens need ~37/s on average. It keeps TikTok, the database (8 + 2 connections) and a
# small host comfortable; raise it for more accounts, or shard across hosts.
CONCURRENCY = 8
# Below the 30-minute cron interval, so a run ends (and frees its lock) before the next.
MAX_RUNTIME = timedelta(minutes=25)
# The whole of one call to TikTok, connect to last byte.
HTTP_TIMEOUT = 20.0  # seconds
# Refresh attempts and finished runs are kept this long (`cleanup`).
RETENTION = timedelta(days=30)
# `status --check`: the last successful refresh may be this old (two cron ticks).
MAX_AGE = timedelta(hours=1)
# `status`: accounts needing their user listed at most; `accounts show`: attempts shown.
RECONNECT_LISTED = 50
ATTEMPTS_SHOWN = 10
