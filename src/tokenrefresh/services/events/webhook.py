"""WebhookSender: one signed POST per event, per the Standard Webhooks spec.

Headers `webhook-id` (the event's id, the same on every redelivery), `webhook-timestamp`
(integer seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`id.timestamp.body`, by the `standardwebhooks` package); the body is the event's payload,
byte for byte. The call is an `outbound.BoundedClient` POST: no redirect followed, nothing
retried below us, the whole call bounded by `timeout`, and nothing of the answer's body
read: only its status counts. A 2xx status means delivered; anything else raises
`DeliveryFailed`, whose reason is the status and its standard phrase, never the receiver's
text (which may echo what it was sent, the Authorization header included).
"""

from __future__ import annotations

import http
import math
from datetime import UTC, datetime

from standardwebhooks import Webhook

from tokenrefresh.adapters.outbound.call import BoundedClient, CallFailed
from tokenrefresh.base.closing import Closing
from tokenrefresh.base.events.checks import webhook_secret_key, webhook_url_problem
from tokenrefresh.base.events.records import PendingEvent

__all__ = ["DEFAULT_TIMEOUT", "DeliveryFailed", "WebhookSender", "refusal_reason"]

DEFAULT_TIMEOUT = 5.0  # seconds for a whole call, connect to last byte
REASON_LIMIT = 200  # characters of a failure's reason (it is stored with the event)
# Statuses by which a receiver (or its gateway) says it cannot take anything now.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})


class DeliveryFailed(Exception):
    """The receiver did not take the event. `reason` is short and names no secret;
    `receiver_unavailable`: no answer at all (refused, timed out, cut), or an answer that
    says it takes nothing now (429, 502, 503, 504): sending more this round is pointless."""

    def __init__(self, reason: str, *, receiver_unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.receiver_unavailable = receiver_unavailable


class WebhookSender(Closing):
    """Signs and POSTs events to one receiver. Not thread-safe: one sender per thread."""

    def __init__(self, url: str, secret: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        problem = webhook_url_problem(url)
        if problem:
            raise ValueError(f"the webhook URL {problem}")  # the URL itself is not repeated
        key = webhook_secret_key(secret)
        if isinstance(key, str):
            raise ValueError(f"the webhook secret {key}")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._url = url
        self._webhook = Webhook(key)
        self._http = BoundedClient(timeout=timeout, connect_timeout=timeout, max_body_bytes=0)

    @property
    def timeout(self) -> float:
        return self._http.timeout

    def send(self, event: PendingEvent, *, now: datetime, timeout: float | None = None) -> None:
        """POST the event, signed at `now` (timezone-aware). `timeout` may shorten (never
        lengthen) the sender's own, so that a caller's budget holds. DeliveryFailed unless
        the receiver answered 2xx."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        seconds = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        signed_at = now.astimezone(UTC)
        body = event.payload.encode("utf-8", errors="surrogatepass")
        headers = {
            "content-type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(math.floor(signed_at.timestamp())),
            "webhook-signature": self._webhook.sign(event.event_id, signed_at, event.payload),
        }
        try:
            status = self._http.post(self._url, body, headers, timeout=seconds).status
        except CallFailed as failure:
            raise DeliveryFailed(_no_answer(failure, seconds), receiver_unavailable=True) from None
        if 200 <= status < 300:
            return
        raise DeliveryFailed(
            refusal_reason(status), receiver_unavailable=status in UNAVAILABLE_STATUSES
        )

    def close(self) -> None:
        self._http.close()


def refusal_reason(status: int) -> str:
    """What a refusal is stored and shown as: the status and its standard reason phrase.
    The receiver's own words are not kept: they may echo the request's credentials."""
    if 300 <= status < 400:
        return f"redirect not followed (HTTP {status})"
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
    return f"HTTP {status}: {phrase}"


def _no_answer(failure: CallFailed, seconds: float) -> str:
    """No answer: why, in a few words."""
    if not failure.sent:
        if failure.timed_out:
            return f"could not connect within {seconds:g}s"
        if failure.cause in ("connection refused", "host name not found", "TLS handshake failed"):
            return failure.cause
        return f"could not connect ({failure.cause})"
    if failure.timed_out:
        return f"timed out after {seconds:g}s"
    return f"connection failed after sending ({failure.cause})"
