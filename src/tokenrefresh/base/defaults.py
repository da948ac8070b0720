"""Every default a user can change, in one place: the CLI's options and the services read
these, so `--help`, the README and the behaviour cannot drift apart."""

from __future__ import annotations

from tokenrefresh.base.durations import Duration, Seconds

__all__ = [
    "APP",
    "ATTEMPTS_SHOWN",
    "CONCURRENCY",
    "DELIVERY_BUDGET",
    "DELIVERY_MAX_EVENTS",
    "EVENT_RETENTION",
    "FAILING_AFTER",
    "HTTP_TIMEOUT",
    "MAX_AGE",
    "MAX_HTTP_TIMEOUT",
    "MAX_RUNTIME",
    "MIN_HTTP_TIMEOUT",
    "MIN_VALID",
    "RECONNECT_LISTED",
    "RETENTION",
    "WARN_BEFORE",
    "WINDOW",
]

# The app of a configuration without a file (TIKTOK_CLIENT_KEY and friends), and of every
# account stored before accounts belonged to apps (migration 0006).
APP = "tiktok"
# With 2-hour access tokens and cron every 30 minutes: an account is first taken with
# 60-90 minutes left; if that tick is missed (or its run is slow), the next one still
# finds 30-60 minutes left, enough for a full run of up to MAX_RUNTIME.
WINDOW = Duration(minutes=90)
# 8 calls in flight at ~100 ms each is ~80 refreshes/s: 100,000 accounts with 2-hour
# tokens need ~37/s on average. It keeps TikTok and a small host comfortable (the database
# sees at most 8 connections from a run, whatever the concurrency); raise it for more
# accounts, or shard across hosts.
CONCURRENCY = 8
# Below the 30-minute cron interval, so a run ends (and frees its lock) before the next.
MAX_RUNTIME = Duration(minutes=25)
# The whole of one call to TikTok, connect to last byte.
HTTP_TIMEOUT = Seconds(20.0)
# At most: one account's whole refresh (3 calls, the waits between them) must end well
# within its claim's lease (storage.claims.DEFAULT_LEASE, 5 minutes), or another claimer
# could present the same refresh token. A test keeps the two in step.
MAX_HTTP_TIMEOUT = 60.0  # seconds
MIN_HTTP_TIMEOUT = 0.1  # seconds: less cannot even connect
# An access token handed to an app (`accounts token`, `TokenStore.access_token`) stays
# valid at least this long, or the account is refreshed first.
MIN_VALID = Duration(minutes=5)
# Refresh attempts and finished runs are kept this long (`cleanup`).
RETENTION = Duration(days=30)
# `status --check`: the last successful refresh may be this old (two cron ticks).
MAX_AGE = Duration(hours=1)
# `status`: accounts needing their user listed at most; `accounts show`: attempts shown.
RECONNECT_LISTED = 50
ATTEMPTS_SHOWN = 10
# Events (see the README, "Events"): `account.failing` after this many transient failures
# in a row; `account.refresh_token_expiring` this long before a refresh token's own
# expiry; undelivered events are given up after EVENT_RETENTION, and delivered ones pruned.
FAILING_AFTER = 5
WARN_BEFORE = Duration(days=14)
EVENT_RETENTION = Duration(days=7)
# Delivery at the end of a run: at most this many events, within this many seconds.
DELIVERY_BUDGET = 10.0
DELIVERY_MAX_EVENTS = 100
