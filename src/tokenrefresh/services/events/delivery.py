"""deliver(): the outbox's pending events to the webhook receiver and the human digest,
within a time budget, never raising for a receiver's problem (a run's exit code does not
depend on a receiver); only the store's DatabaseError passes.

Rules:
- Events pending longer than `retention` are given up first (one WARNING with the count).
- Oldest first, at most `max_events`, while the budget lasts: a send starts only with at
  least min(sender timeout, MIN_SEND_SECONDS) left, and is cut to what is left, so the
  call returns within the budget (plus the store's own time).
- A failed send is retried after `backoff(attempts)`: 30 s * 2^attempts, at most 1 h,
  times a random factor in [0.75, 1] (jitter that never lets a later wait be shorter).
- The round stops at the first failure that says the receiver takes nothing now (no
  answer at all: refused, timed out, cut; or 429, 502, 503, 504): the other events wait
  for the next run, untouched. A 4xx or other 5xx is about that event: the round goes on.
- Webhook and digest: the webhook decides the delivered state; one digest per call, for
  the events sent for the first time in this call (attempts == 0), best effort.
- Digest only: the digest is the delivery (delivered after a successful notify).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tokenrefresh.base.events.records import DeliveryReport, OutboxStore, PendingEvent
from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.services.events.webhook import REASON_LIMIT, DeliveryFailed, WebhookSender

if TYPE_CHECKING:
    from tokenrefresh.base.settings import Settings
    from tokenrefresh.services.events.notify import Notifier

__all__ = ["backoff", "deliver", "senders_from"]

log = logging.getLogger("tokenrefresh.events.delivery")  # the name logs have always shown

BACKOFF_BASE = 30.0  # seconds before the first retry
BACKOFF_CAP = 3600.0
MIN_SEND_SECONDS = 1.0  # no send starts with less time left than this (or the timeout)
DIGEST_RESERVE = 5.0  # seconds kept for the digest when both are configured (at most 1/4)
NOTIFY_FAILED = "notification failed"


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """How long to wait after the (attempts + 1)th failed attempt."""
    base = min(BACKOFF_BASE * 2 ** min(attempts, 32), BACKOFF_CAP)
    return timedelta(seconds=base * (rng or random).uniform(0.75, 1.0))


def deliver(
    store: OutboxStore,
    *,
    sender: WebhookSender | None,
    notifier: Notifier | None,
    clock: Callable[[], datetime],
    budget: float,
    max_events: int = 100,
    retention: timedelta = timedelta(days=7),
) -> DeliveryReport:
    """Deliver what is due; see the module's rules. `budget` in seconds (monotonic)."""
    deadline = time.monotonic() + budget
    now = clock()
    dropped = store.drop_undelivered_before(now - retention, now)
    if dropped:
        log.warning(
            "gave up on %d undelivered event(s) recorded more than %s ago (the retention)",
            dropped,
            _duration(retention),
        )
    if sender is None and notifier is None:
        return DeliveryReport(dropped=dropped)
    events = store.pending_events(now, max_events)
    capped = len(events) >= max_events
    if not events:
        return DeliveryReport(dropped=dropped)
    if sender is None:
        assert notifier is not None
        return _digest_only(store, notifier, events, clock, deadline, dropped, capped)
    reserve = min(DIGEST_RESERVE, budget / 4) if notifier is not None else 0.0
    delivered, failed, sent, out_of_time = _send_all(
        store, sender, events, clock, deadline - reserve
    )
    notified = 0
    first_seen = [event for event in sent if event.attempts == 0]
    if (
        notifier is not None
        and first_seen
        and _notify_within(notifier, first_seen, deadline - time.monotonic())
    ):
        notified = len(first_seen)
    return DeliveryReport(
        delivered=delivered,
        failed=failed,
        dropped=dropped,
        notified=notified,
        budget_exhausted=out_of_time or (capped and len(sent) == len(events)),
    )


def senders_from(settings: Settings) -> tuple[WebhookSender | None, Notifier | None]:
    """The sender and notifier the settings configure (None where not configured)."""
    sender = None
    if settings.webhook_url is not None and settings.webhook_secret is not None:
        sender = WebhookSender(settings.webhook_url.reveal(), settings.webhook_secret.reveal())
    notifier = None
    if settings.notify_urls is not None:
        from tokenrefresh.services.events.notify import Notifier

        notifier = Notifier(settings.notify_urls.reveal())
    return sender, notifier


def _send_all(
    store: OutboxStore,
    sender: WebhookSender,
    events: Sequence[PendingEvent],
    clock: Callable[[], datetime],
    deadline: float,
) -> tuple[int, int, list[PendingEvent], bool]:
    """Delivered, failed, the events sent, and whether time ran out first."""
    delivered = failed = 0
    sent: list[PendingEvent] = []
    minimum = min(sender.timeout, MIN_SEND_SECONDS)
    for position, event in enumerate(events):
        remaining = deadline - time.monotonic()
        if remaining < minimum:
            log.info("delivery budget spent: %d event(s) wait", len(events) - position)
            return delivered, failed, sent, True
        sent.append(event)
        try:
            sender.send(event, now=clock(), timeout=remaining)
        except DeliveryFailed as failure:
            failed += 1
            reason = safe_text(scrub(failure.reason), REASON_LIMIT)
            store.mark_failed(event.id, reason, clock() + backoff(event.attempts))
            log.warning(
                "webhook: event %s (%s) not delivered: %s", event.event_id, event.type, reason
            )
            if failure.receiver_unavailable:
                waiting = len(events) - position - 1
                if waiting:
                    log.warning("webhook receiver unavailable: %d event(s) wait", waiting)
                break
        else:
            store.mark_delivered(event.id, clock())
            delivered += 1
    return delivered, failed, sent, False


def _digest_only(
    store: OutboxStore,
    notifier: Notifier,
    events: Sequence[PendingEvent],
    clock: Callable[[], datetime],
    deadline: float,
    dropped: int,
    capped: bool,
) -> DeliveryReport:
    remaining = deadline - time.monotonic()
    if remaining < MIN_SEND_SECONDS:
        return DeliveryReport(dropped=dropped, budget_exhausted=True)
    if _notify_within(notifier, events, remaining):
        now = clock()
        for event in events:
            store.mark_delivered(event.id, now)
        count = len(events)
        return DeliveryReport(
            delivered=count, dropped=dropped, notified=count, budget_exhausted=capped
        )
    now = clock()
    for event in events:
        store.mark_failed(event.id, NOTIFY_FAILED, now + backoff(event.attempts))
    return DeliveryReport(failed=len(events), dropped=dropped, budget_exhausted=capped)


def _notify_within(notifier: Notifier, events: Sequence[PendingEvent], seconds: float) -> bool:
    """The digest, in a daemon thread given at most `seconds` (Apprise's own timeouts are
    per service and per socket operation): True if sent; a failure is logged, never raised."""
    if seconds <= 0:
        log.warning("digest not sent: the delivery budget is spent")
        return False
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(notifier.notify(events))
        except Exception as error:  # a digest must never end the run
            log.warning("digest not sent: %s", type(error).__name__)
            outcome.append(False)

    thread = threading.Thread(target=run, name="tokenrefresh-digest", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        log.warning("digest not sent within %.1f s: given up", seconds)
        return False
    if not outcome or not outcome[0]:
        if outcome:
            log.warning("digest not sent: the notification service did not take it")
        return False
    return True


def _duration(span: timedelta) -> str:
    if span.total_seconds() % 86400 == 0:
        days = int(span.total_seconds() // 86400)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{span.total_seconds():g} s"
