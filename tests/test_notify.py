"""The human digest through Apprise's own json:// notifier, against the loopback receiver
(not mocked): one message per call naming the accounts, bounded, scrubbed; the digest as
the delivery when no webhook is configured, best effort beside one."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbox_fake import FakeOutbox
from receiver import Receiver, Reply, closed_port, running_receiver
from tokenrefresh.base.events.records import DeliveryReport
from tokenrefresh.base.scrub import safe_text
from tokenrefresh.errors import ConfigError
from tokenrefresh.services.events.delivery import deliver
from tokenrefresh.services.events.notify import Notifier, digest
from tokenrefresh.services.events.webhook import WebhookSender

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(SECRET) as running:
        yield running


def notify_url(receiver: Receiver) -> str:
    return f"json://127.0.0.1:{receiver.port}/hooks/notify"


def messages(receiver: Receiver, count: int) -> list[dict[str, str]]:
    return [
        json.loads(item.body) for item in receiver.wait_for(count) if item.path == "/hooks/notify"
    ]


def deliver_at(
    outbox: FakeOutbox, now: datetime, notify: str, sender: WebhookSender | None = None
) -> DeliveryReport:
    """One delivery round at the moment now: the digest to notify, 20 s of budget."""
    return deliver(outbox, sender=sender, notifier=Notifier(notify), clock=lambda: now, budget=20)


def mixed_outbox(now: datetime) -> FakeOutbox:
    outbox = FakeOutbox()
    at = now - timedelta(minutes=5)
    for account_id, open_id, label in [(7, "abc123", "Shop Berlin"), (8, "def456", None)]:
        outbox.add(
            "account.expired",
            {
                "account_id": account_id,
                "open_id": open_id,
                "label": label,
                "reason": "refresh token rejected",
            },
            at,
        )
    outbox.add(
        "account.refresh_token_expiring",
        {
            "account_id": 9,
            "open_id": "ghi",
            "label": "Café",
            "refresh_expires_at": "2026-12-01T00:00:00Z",
        },
        at,
    )
    outbox.add("account.failing", {"account_id": 10, "open_id": "jkl", "label": "x"}, at)
    outbox.add(
        "run.failed",
        {"command": "refresh", "exit_code": 3, "message": "TIKTOK_CLIENT_SECRET is not set"},
        at,
    )
    return outbox


def test_one_digest_per_call_names_the_accounts(receiver: Receiver) -> None:
    now = datetime.now(UTC)
    outbox = mixed_outbox(now)
    report = deliver_at(outbox, now, notify_url(receiver))
    assert (report.delivered, report.notified, report.failed) == (5, 5, 0)
    [message] = messages(receiver, 1)
    assert message["title"] == "tokenrefresh: 2 accounts need their users to reconnect"
    lines = message["message"].splitlines()
    assert lines == [
        "2 accounts need their users to reconnect: 7 (abc123, Shop Berlin): "
        "refresh token rejected, 8 (def456): refresh token rejected",
        "1 refresh token expires soon: 9 (ghi, Café) on 2026-12-01T00:00:00Z",
        "1 account keeps failing: 10 (jkl, x)",
        "run failed: refresh (exit 3): TIKTOK_CLIENT_SECRET is not set",
    ]
    assert all(row.delivered_at == now for row in outbox.rows.values())
    again = deliver_at(outbox, now, notify_url(receiver))
    assert again.notified == 0
    assert len(receiver.wait_for(2, seconds=0.5)) == 1


def test_a_failed_digest_keeps_the_events_pending_when_it_is_the_delivery() -> None:
    now = datetime.now(UTC)
    outbox = mixed_outbox(now)
    with closed_port() as port:
        report = deliver_at(outbox, now, f"json://127.0.0.1:{port}/")
    assert (report.delivered, report.failed, report.notified) == (0, 5, 0)
    assert all(
        row.event.attempts == 1 and row.next_attempt_at > now for row in outbox.rows.values()
    )


def test_with_a_webhook_the_digest_covers_first_attempts_only_and_is_best_effort(
    receiver: Receiver,
) -> None:
    now = datetime.now(UTC)
    outbox = mixed_outbox(now)
    receiver.script += [Reply(204), Reply(204), Reply(500), Reply(204), Reply(204)]
    with WebhookSender(receiver.url, SECRET) as sender:
        report = deliver_at(outbox, now, notify_url(receiver), sender)
        assert (report.delivered, report.failed, report.notified) == (4, 1, 5)
        [message] = messages(receiver, 6)
        assert message["title"].startswith("tokenrefresh: 2 accounts")
        # The retry of the failed event goes to the webhook only: no second digest.
        later = now + timedelta(hours=2)
        receiver.default = Reply(204)
        report = deliver_at(outbox, later, notify_url(receiver), sender)
        assert (report.delivered, report.notified) == (1, 0)
    assert len(messages(receiver, 7)) == 1
    # A digest that cannot be sent changes nothing for the webhook.
    outbox = mixed_outbox(now)
    with closed_port() as port, WebhookSender(receiver.url, SECRET) as sender:
        report = deliver_at(outbox, now, f"json://127.0.0.1:{port}/", sender)
    assert (report.delivered, report.notified) == (5, 0)


def test_the_digest_is_bounded() -> None:
    now = datetime.now(UTC)
    outbox = FakeOutbox()
    for number in range(250):
        outbox.add(
            "account.expired",
            {"account_id": number, "open_id": f"o{number}", "label": "L" * 500},
            now,
        )
    title, body = digest(list(outbox.pending_events(now, 1000)))
    assert title == "tokenrefresh: 250 accounts need their users to reconnect"
    assert body.endswith(", and 230 more")
    assert body.count("(o") == 20
    assert len(body) < 20 * 120


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.one_of(st.none(), st.text(), st.integers(), st.lists(st.text(max_size=3))),
    reason=st.text(),
    payload_text=st.one_of(st.none(), st.text(max_size=40)),
)
def test_any_label_reason_or_payload_gives_a_clean_digest_without_the_secret(
    label: object, reason: str, payload_text: str | None
) -> None:
    url = "tgram://123456789:AAHsecretbottokenvalue/-100200300"
    outbox = FakeOutbox()
    now = datetime.now(UTC)
    outbox.add(
        "account.expired",
        {"account_id": 1, "open_id": url, "label": label, "reason": f"{reason}{url}"},
        now,
    )
    outbox.add("account.failing", {}, now, payload=payload_text)
    outbox.add("run.failed", {"message": url + reason}, now)
    title, body = digest(outbox.pending_events(now, 10), [url])
    for text in (title, body):
        assert "AAHsecretbottokenvalue"[:12] not in text
        assert all(safe_text(line) == line for line in text.split("\n"))  # nothing to escape
    assert title.startswith("tokenrefresh: ")
    assert len(title) <= 200


def test_urls_apprise_does_not_know_are_a_config_error_that_repeats_nothing() -> None:
    with pytest.raises(ConfigError, match="URL #2 is not one Apprise understands") as caught:
        Notifier("json://127.0.0.1:9/x, nosuchservice://secretpart1234567")
    assert "secretpart" not in caught.value.message
    with pytest.raises(ConfigError, match="holds no URL"):
        Notifier(" , ")


def test_without_apprise_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` raises ImportError
    with pytest.raises(ConfigError) as caught:
        Notifier("json://127.0.0.1:9/x")
    assert "pip install 'tokenrefresh[notify]'" in caught.value.message
    assert caught.value.exit_code == 3


def test_a_notification_service_that_never_answers_does_not_hold_delivery(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Apprise bounds each socket operation only: a service trickling its answer would hold
    it for ever. The digest runs in a thread given the budget, and counts as not sent."""
    now = datetime.now(UTC)
    outbox = mixed_outbox(now)
    receiver.default = Reply(trickle=True)  # a header byte every 0.1 s, for ever
    budget = 2.0
    reports: list[DeliveryReport] = []

    def run() -> None:
        reports.append(
            deliver(
                outbox,
                sender=None,
                notifier=Notifier(notify_url(receiver)),
                clock=lambda: now,
                budget=budget,
            )
        )

    delivering = threading.Thread(target=run, daemon=True)
    with caplog.at_level(logging.WARNING):
        delivering.start()
        delivering.join(budget + 30)  # the trickle itself never ends
    assert not delivering.is_alive()
    [report] = reports
    assert (report.delivered, report.failed, report.notified) == (0, 5, 0)
    assert all(row.errors == ["notification failed"] for row in outbox.rows.values())
    assert "digest not sent within" in caplog.text
    assert len(receiver.wait_for(1)) == 1  # it was tried
