"""deliver() with an in-memory outbox and a real receiver on loopback: what is marked
delivered, what waits (attempts + 1, a growing back-off), when a round stops, the time
budget, the retention, and no fragment of the webhook secret anywhere."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from outbox_fake import FakeOutbox, Row
from receiver import Receiver, Reply, closed_port, running_receiver
from tokenrefresh.base.events.records import DeliveryReport
from tokenrefresh.services.events.delivery import backoff, deliver
from tokenrefresh.services.events.webhook import WebhookSender

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
EXPIRED = "account.expired"


class Clock:
    """Real time (the receiver checks timestamps against its own clock) plus an offset."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def move_past(self, moment: datetime) -> None:
        """From now on, one second after the moment."""
        self.offset = moment - datetime.now(UTC) + timedelta(seconds=1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(SECRET) as running:
        yield running


@pytest.fixture
def sender(receiver: Receiver) -> Iterator[WebhookSender]:
    with WebhookSender(receiver.url, SECRET, timeout=2.0) as made:
        yield made


def outbox_with(count: int, clock: Clock) -> FakeOutbox:
    outbox = FakeOutbox()
    start = clock() - timedelta(minutes=count)
    for number in range(count):
        outbox.add(
            EXPIRED,
            {"account_id": number, "open_id": f"open{number}", "label": f"Shop {number}"},
            start + timedelta(minutes=number),
        )
    return outbox


def one_event(clock: Clock) -> tuple[FakeOutbox, Row]:
    """An outbox of one pending event, and its row."""
    outbox = outbox_with(1, clock)
    [row] = outbox.rows.values()
    return outbox, row


def run(
    outbox: FakeOutbox, sender: WebhookSender | None, clock: Clock, budget: float = 30.0
) -> DeliveryReport:
    return deliver(outbox, sender=sender, notifier=None, clock=clock, budget=budget)


def test_2xx_marks_delivered_oldest_first(receiver: Receiver, sender: WebhookSender) -> None:
    clock = Clock()
    outbox = outbox_with(3, clock)
    receiver.script += [Reply(200), Reply(201), Reply(204)]
    report = run(outbox, sender, clock)
    assert (report.delivered, report.failed, report.budget_exhausted) == (3, 0, False)
    got = receiver.wait_for(3)
    assert [item.id for item in got] == [row.event.event_id for row in outbox.rows.values()]
    assert all(item.verified for item in got)
    assert all(row.delivered_at is not None for row in outbox.rows.values())
    assert run(outbox, sender, clock).delivered == 0  # nothing is sent twice


def test_a_failure_keeps_the_event_pending_with_a_growing_wait(
    receiver: Receiver, sender: WebhookSender
) -> None:
    clock = Clock()
    outbox, row = one_event(clock)
    receiver.default = Reply(500)
    waits = []
    for attempt in range(1, 5):
        before = clock()
        report = run(outbox, sender, clock)
        assert (report.delivered, report.failed) == (0, 1)
        assert row.event.attempts == attempt
        assert row.delivered_at is None
        assert row.errors[-1] == "HTTP 500: Internal Server Error"
        waits.append(row.next_attempt_at - before)
        assert run(outbox, sender, clock).failed == 0  # not due yet: not sent again
        clock.move_past(row.next_attempt_at)
    assert timedelta(seconds=22) < waits[0] <= timedelta(seconds=31)
    assert all(later > earlier for earlier, later in itertools.pairwise(waits))
    assert len(receiver.wait_for(4)) == 4


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempts in range(12):
        base = min(30 * 2**attempts, 3600)
        for _ in range(50):
            wait = backoff(attempts).total_seconds()
            assert 0.75 * base <= wait <= base
    assert backoff(10_000).total_seconds() <= 3600


def test_redelivery_has_the_same_id_and_a_fresh_timestamp_and_signature(
    receiver: Receiver, sender: WebhookSender
) -> None:
    clock = Clock()
    outbox, row = one_event(clock)
    receiver.script += [Reply(503), Reply(204)]
    run(outbox, sender, clock)
    clock.move_past(row.next_attempt_at)
    assert run(outbox, sender, clock).delivered == 1
    first, second = receiver.wait_for(2)
    assert first.id == second.id == row.event.event_id
    assert first.body == second.body
    assert int(second.timestamp or 0) - int(first.timestamp or 0) >= 20
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.verified
    assert second.verified


@pytest.mark.parametrize("reply", [Reply(503), Reply(429), Reply(drop=True)])
def test_a_receiver_that_takes_nothing_now_ends_the_round(
    receiver: Receiver, sender: WebhookSender, reply: Reply
) -> None:
    clock = Clock()
    outbox = outbox_with(5, clock)
    receiver.default = reply
    report = run(outbox, sender, clock)
    assert (report.delivered, report.failed) == (0, 1)
    assert len(receiver.wait_for(1)) == 1
    assert [row.event.attempts for row in outbox.rows.values()] == [1, 0, 0, 0, 0]


def test_a_receiver_that_is_down_costs_one_attempt_per_round() -> None:
    clock = Clock()
    outbox = outbox_with(100, clock)
    with closed_port() as port, WebhookSender(f"http://127.0.0.1:{port}/", SECRET) as sender:
        report = run(outbox, sender, clock)
    assert (report.delivered, report.failed) == (0, 1)
    attempts = [row.event.attempts for row in outbox.rows.values()]
    assert attempts == [1] + [0] * 99
    assert outbox.rows[1].errors == ["connection refused"]


def test_an_event_the_receiver_refuses_does_not_stop_the_others(
    receiver: Receiver, sender: WebhookSender
) -> None:
    clock = Clock()
    outbox = outbox_with(3, clock)
    receiver.script += [Reply(400, body=b"unknown type"), Reply(204), Reply(204)]
    report = run(outbox, sender, clock)
    assert (report.delivered, report.failed) == (2, 1)
    assert outbox.rows[1].errors == ["HTTP 400: Bad Request"]


def test_a_slow_receiver_does_not_hold_delivery_past_its_budget(receiver: Receiver) -> None:
    clock = Clock()
    outbox = outbox_with(20, clock)
    receiver.default = Reply(400, delay=0.7)  # slow, and not a reason to stop the round
    budget, timeout = 2.0, 3.0
    with WebhookSender(receiver.url, SECRET, timeout=timeout) as sender:
        started = time.monotonic()
        report = deliver(outbox, sender=sender, notifier=None, clock=clock, budget=budget)
        elapsed = time.monotonic() - started
    assert elapsed < budget + timeout  # 20 events at 0.7 s would take 14 s
    assert report.budget_exhausted
    assert 1 <= report.failed < 20
    untouched = [row for row in outbox.rows.values() if row.event.attempts == 0]
    assert len(untouched) == 20 - report.failed


def test_a_send_is_cut_to_the_budget_left(receiver: Receiver) -> None:
    clock = Clock()
    outbox = outbox_with(3, clock)
    receiver.default = Reply(trickle=True)
    budget, timeout = 1.5, 20.0
    with WebhookSender(receiver.url, SECRET, timeout=timeout) as sender:
        started = time.monotonic()
        report = deliver(outbox, sender=sender, notifier=None, clock=clock, budget=budget)
        elapsed = time.monotonic() - started
    assert elapsed < budget + 3.0  # not the sender's 20 s
    assert report.failed == 1
    assert outbox.rows[1].errors[0].startswith("timed out after 1.")


def test_events_older_than_the_retention_are_dropped_with_a_warning(
    receiver: Receiver, sender: WebhookSender, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    outbox = FakeOutbox()
    old = outbox.add(EXPIRED, {"label": "OLD-LABEL"}, clock() - timedelta(days=8))
    older = outbox.add(EXPIRED, {"label": "OLD-LABEL"}, clock() - timedelta(days=30))
    recent = outbox.add(EXPIRED, {"label": "new"}, clock() - timedelta(days=6))
    with caplog.at_level(logging.DEBUG):
        report = run(outbox, sender, clock)
    assert (report.dropped, report.delivered) == (2, 1)
    assert outbox.row(old).dropped
    assert outbox.row(older).dropped
    assert outbox.row(recent).delivered_at is not None
    assert [item.id for item in receiver.wait_for(1)] == [recent.event_id]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 undelivered event(s)" in warnings[0].getMessage()
    assert "7 days" in warnings[0].getMessage()
    assert "OLD-LABEL" not in caplog.text


def test_nothing_configured_still_drops_and_sends_nothing() -> None:
    clock = Clock()
    outbox = outbox_with(2, clock)
    outbox.add(EXPIRED, {}, clock() - timedelta(days=9))
    report = deliver(outbox, sender=None, notifier=None, clock=clock, budget=5)
    assert (report.dropped, report.delivered, report.failed) == (1, 0, 0)


def fragments(secret: str) -> set[str]:
    body = secret.removeprefix("whsec_")
    return {body[start : start + 8] for start in range(len(body) - 7)}


@pytest.mark.parametrize(
    "reply", [Reply(204), Reply(500), Reply(302, location="http://127.0.0.1:9/"), Reply(drop=True)]
)
def test_no_fragment_of_the_secret_in_headers_logs_or_reasons(
    receiver: Receiver, reply: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    outbox = outbox_with(2, clock)
    outbox.add(EXPIRED, {}, clock() - timedelta(days=9))
    receiver.default = reply
    with (
        caplog.at_level(logging.DEBUG),
        WebhookSender(receiver.url, SECRET, timeout=2.0) as sender,
    ):
        run(outbox, sender, clock)
    shown = [caplog.text, *(error for row in outbox.rows.values() for error in row.errors)]
    for got in receiver.wait_for(1):
        shown += [f"{name}: {value}" for name, value in got.headers.items()]
        shown.append(got.body.decode())
    for fragment in fragments(SECRET):
        assert not any(fragment in text for text in shown), fragment


def test_a_receiver_echoing_the_secret_is_not_quoted_in_the_reason(receiver: Receiver) -> None:
    clock = Clock()
    outbox = outbox_with(1, clock)
    receiver.default = Reply(400, body=f"you sent {SECRET} and {SECRET[6:]}".encode())
    with WebhookSender(receiver.url, SECRET) as sender:
        run(outbox, sender, clock)
    [error] = outbox.rows[1].errors
    assert error == "HTTP 400: Bad Request"  # only the status and its standard phrase
