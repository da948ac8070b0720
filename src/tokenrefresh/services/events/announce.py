"""After a run: notice refresh tokens about to run out, then deliver what is pending.

Delivery happens after the run's lock is released, within a small budget, and never
changes the run's exit code: a receiver that is down keeps its events pending for the
next run (or `tokenrefresh events deliver`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from tokenrefresh.base import defaults
from tokenrefresh.base.clock import utcnow
from tokenrefresh.base.events.records import DeliveryReport
from tokenrefresh.base.settings import Settings
from tokenrefresh.errors import TokenRefreshError
from tokenrefresh.storage.records import Shard
from tokenrefresh.storage.repository import Repository

__all__ = ["deliver_pending", "delivery_configured", "notice_expiring"]

log = logging.getLogger("tokenrefresh.events")


def delivery_configured(settings: Settings) -> bool:
    """Whether events go anywhere (a webhook, or people through Apprise)."""
    return any(getattr(settings, name, None) is not None for name in ("webhook_url", "notify_urls"))


def notice_expiring(repository: Repository, warn_before: timedelta, shard: Shard | None) -> int:
    """Record `account.refresh_token_expiring` where due; a database problem is logged,
    never the run's failure (the next run looks again)."""
    try:
        return repository.record_expiring(utcnow(), warn_before, shard)
    except TokenRefreshError as error:
        log.warning("could not look for refresh tokens about to expire: %s", error.message)
        return 0


def deliver_pending(
    settings: Settings,
    repository: Repository,
    *,
    retention: timedelta = defaults.EVENT_RETENTION,
    budget: float = defaults.DELIVERY_BUDGET,
    max_events: int = defaults.DELIVERY_MAX_EVENTS,
) -> DeliveryReport | None:
    """Deliver pending events if a target is configured (None if none is); problems are
    logged, never raised."""
    if not delivery_configured(settings):
        return None
    from tokenrefresh.services.events.delivery import deliver, senders_from

    try:
        sender, notifier = senders_from(settings)
    except TokenRefreshError as error:
        log.warning("events were not delivered: %s", error.message)
        return None
    try:
        report = deliver(
            repository,
            sender=sender,
            notifier=notifier,
            clock=utcnow,
            budget=budget,
            max_events=max_events,
            retention=retention,
        )
    except TokenRefreshError as error:
        log.warning("events were not delivered: %s", error.message)
        return None
    finally:
        if sender is not None:
            sender.close()  # its watchdog thread and HTTP session
    if report.delivered or report.failed or report.dropped:
        log.info(
            "events: %d delivered, %d failed (kept for the next run), %d dropped",
            report.delivered,
            report.failed,
            report.dropped,
        )
    return report
