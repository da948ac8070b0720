"""WebhookSender against a real receiver on loopback: Standard Webhooks signatures that
verify, the payload sent byte for byte, and no receiver able to hold it past its timeout,
redirect it, or make it read an endless answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from outbox_fake import FakeOutbox
from receiver import HUGE, Receiver, Reply, closed_port, running_receiver
from tokenrefresh.base.events.records import PendingEvent
from tokenrefresh.services.events.webhook import DeliveryFailed, WebhookSender

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PAYLOAD = (
    '{"type":"account.expired","timestamp":"2026-11-28T12:00:00Z",'
    '"data":{"account_id":7,"open_id":"abc123","label":"Shöp Berlin \\u00e9 ✓"}}'
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(SECRET) as running:
        yield running


def one_event() -> tuple[FakeOutbox, PendingEvent]:
    outbox = FakeOutbox()
    return outbox, outbox.add("account.expired", {}, datetime.now(UTC), payload=PAYLOAD)


def failure(sender: WebhookSender) -> DeliveryFailed:
    outbox = FakeOutbox()
    pending = outbox.add("account.expired", {}, datetime.now(UTC), payload=PAYLOAD)
    with pytest.raises(DeliveryFailed) as caught:
        sender.send(pending, now=datetime.now(UTC))
    return caught.value


def test_a_signed_post_verifies_and_carries_exactly_the_specified_headers(
    receiver: Receiver,
) -> None:
    outbox = FakeOutbox()
    pending = outbox.add("account.expired", {}, datetime.now(UTC), payload=PAYLOAD)
    now = datetime.now(UTC).replace(microsecond=987654)
    with WebhookSender(receiver.url, SECRET) as sender:
        sender.send(pending, now=now)
    [got] = receiver.wait_for(1)
    assert got.verified
    assert got.body == PAYLOAD.encode("utf-8")  # verbatim, UTF-8, not re-serialised
    assert got.path == "/hooks/events"
    timestamp = str(int(now.timestamp()))
    assert got.headers["webhook-id"] == pending.event_id
    assert got.headers["webhook-timestamp"] == timestamp
    expected = Webhook(SECRET).sign(pending.event_id, now.replace(microsecond=0), PAYLOAD)
    assert got.headers["webhook-signature"] == expected
    assert expected.startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    # The signature is over "id.timestamp.body", by hand too.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{pending.event_id}.{timestamp}.{PAYLOAD}".encode()
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert got.headers["webhook-signature"] == f"v1,{mac}"


def test_a_signature_with_another_secret_does_not_verify(receiver: Receiver) -> None:
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    _outbox, pending = one_event()
    with WebhookSender(receiver.url, other) as sender:
        sender.send(pending, now=datetime.now(UTC))
    [got] = receiver.wait_for(1)
    assert not got.verified


@pytest.mark.parametrize(
    ("reply", "reason", "unavailable"),
    [
        (Reply(503), "HTTP 503: Service Unavailable", True),
        (Reply(429), "HTTP 429: Too Many Requests", True),
        (Reply(400, body=b"bad\x1b[31m payload\n"), "HTTP 400: Bad Request", False),
        (Reply(500), "HTTP 500: Internal Server Error", False),
        (Reply(599, body=b"odd"), "HTTP 599", False),
        (Reply(drop=True), "connection failed after sending", True),
    ],
)
def test_anything_but_2xx_is_a_failure_with_a_short_reason(
    receiver: Receiver, reply: Reply, reason: str, unavailable: bool
) -> None:
    receiver.script.append(reply)
    with WebhookSender(receiver.url, SECRET) as sender:
        failed = failure(sender)
    assert failed.reason.startswith(reason)
    assert "payload" not in failed.reason  # the receiver's own words are never kept
    assert failed.receiver_unavailable is unavailable
    assert len(failed.reason) <= 200


def test_a_closed_port_is_connection_refused() -> None:
    with closed_port() as port, WebhookSender(f"http://127.0.0.1:{port}/x", SECRET) as sender:
        failed = failure(sender)
    assert failed.reason == "connection refused"
    assert failed.receiver_unavailable


@pytest.mark.parametrize("reply", [Reply(204, delay=30), Reply(trickle=True)])
def test_a_slow_or_trickling_receiver_cannot_hold_a_send_past_its_timeout(
    receiver: Receiver, reply: Reply
) -> None:
    receiver.default = reply
    with WebhookSender(receiver.url, SECRET, timeout=1.0) as sender:
        started = time.monotonic()
        failed = failure(sender)
        elapsed = time.monotonic() - started
    assert failed.reason == "timed out after 1s"
    assert failed.receiver_unavailable
    assert elapsed < 1.0 + 3.0  # the trickle would go on for ever, the delay for 30 s


def test_a_shorter_timeout_given_to_send_is_honoured(receiver: Receiver) -> None:
    receiver.default = Reply(trickle=True)
    with WebhookSender(receiver.url, SECRET, timeout=30.0) as sender:
        _outbox, pending = one_event()
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"timed out after 0\.5s"):
            sender.send(pending, now=datetime.now(UTC), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 3.0


def test_a_redirect_is_not_followed() -> None:
    with running_receiver(SECRET) as first, running_receiver(SECRET) as target:
        first.script.append(Reply(302, location=target.url))
        with WebhookSender(first.url, SECRET) as sender:
            failed = failure(sender)
        assert failed.reason == "redirect not followed (HTTP 302)"
        assert len(first.wait_for(1)) == 1
        time.sleep(0.3)
        assert target.received == []


def test_a_huge_answer_is_not_read_beyond_the_cap(receiver: Receiver) -> None:
    receiver.script.append(Reply(200, huge=True))
    _outbox, pending = one_event()
    with WebhookSender(receiver.url, SECRET, timeout=10.0) as sender:
        sender.send(pending, now=datetime.now(UTC))
    deadline = time.monotonic() + 10
    while receiver.huge_bytes_written == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    # What the kernel buffers on loopback is a few MiB at most; a sender that read on
    # would take the whole GiB (or its 10 s).
    assert 0 < receiver.huge_bytes_written < 64 * 1024 * 1024 < HUGE


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://10.0.0.1/x",
        "ftp://127.0.0.1/x",
        "https:///nohost",
        "http://127.0.0.1:99999/x",
        "https://hooks.example.com/x#frag",
    ],
)
def test_urls_that_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="the webhook URL") as caught:
        WebhookSender(url, SECRET)
    assert url not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://localhost:8/x", "http://[::1]:8/x"]
)
def test_urls_that_are_accepted(url: str) -> None:
    WebhookSender(url, SECRET).close()


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (SECRET.removeprefix("whsec_"), "must start with 'whsec_'"),
        ("whsec_" + "not base64 at all!!!!!!!!!!!!!!!", "standard base64"),
        ("whsec_" + base64.b64encode(b"short secret").decode(), "between 24 and 64 bytes"),
        ("whsec_" + base64.b64encode(os.urandom(65)).decode(), "between 24 and 64 bytes"),
        ("whsec_", "standard base64"),
    ],
    # Named, not shown: a random secret in a test id differs between xdist workers.
    ids=["no-prefix", "not-base64", "too-short", "too-long", "empty"],
)
def test_secrets_that_are_refused_without_repeating_them(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match="the webhook secret") as caught:
        WebhookSender("https://hooks.example.com/x", secret)
    assert problem in str(caught.value)
    body = secret.removeprefix("whsec_")
    assert not body or body[:12] not in str(caught.value)
