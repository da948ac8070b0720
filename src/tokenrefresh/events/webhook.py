"""WebhookSender: one signed POST per event, per the Standard Webhooks spec.

Headers `webhook-id` (the event's id, the same on every redelivery), `webhook-timestamp`
(integer seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`id.timestamp.body`, by the `standardwebhooks` package); the body is the event's payload,
byte for byte. No redirect is followed, nothing is retried below us, the answer's body is
read no further than `max_response_bytes`, and the whole call, connect to last byte, is
bounded by `timeout` (the watchdog of `tiktok/deadline.py`). A 2xx status means delivered;
anything else raises `DeliveryFailed`, whose reason names no secret.
"""

from __future__ import annotations

import http.client
import math
import os
from datetime import UTC, datetime
from types import TracebackType

import requests
import urllib3.exceptions
from standardwebhooks import Webhook
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from tokenrefresh import __version__
from tokenrefresh.events.checks import SECRET_PREFIX, webhook_secret_key, webhook_url_problem
from tokenrefresh.events.records import PendingEvent
from tokenrefresh.scrub import safe_text, scrub
from tokenrefresh.tiktok.deadline import DeadlineAdapter, Watchdog

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT", "DeliveryFailed", "WebhookSender"]

DEFAULT_TIMEOUT = 5.0  # seconds for a whole call, connect to last byte
DEFAULT_MAX_RESPONSE_BYTES = 4096
REASON_LIMIT = 200  # characters of a failure's reason (it is stored with the event)
_SNIPPET = 80  # characters of a refusing receiver's answer quoted in the reason
# Statuses by which a receiver (or its gateway) says it cannot take anything now.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


class DeliveryFailed(Exception):
    """The receiver did not take the event. `reason` is short and names no secret;
    `receiver_unavailable`: no answer at all (refused, timed out, cut), or an answer that
    says it takes nothing now (429, 502, 503, 504): sending more this round is pointless."""

    def __init__(self, reason: str, *, receiver_unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.receiver_unavailable = receiver_unavailable


class WebhookSender:
    """Signs and POSTs events to one receiver. Not thread-safe: one sender per thread."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        problem = webhook_url_problem(url)
        if problem:
            raise ValueError(f"the webhook URL {problem}")  # the URL itself is not repeated
        key = webhook_secret_key(secret)
        if isinstance(key, str):
            raise ValueError(f"the webhook secret {key}")
        if not timeout > 0 or max_response_bytes < 0:
            raise ValueError("timeout must be positive and max_response_bytes not negative")
        self._url = url
        self._webhook = Webhook(key)
        self._secrets = (secret, secret[len(SECRET_PREFIX) :], url)
        self._timeout = float(timeout)
        self._max_response_bytes = max_response_bytes
        self._watchdog = Watchdog()
        self._session: requests.Session | None = None

    @property
    def timeout(self) -> float:
        return self._timeout

    def send(self, event: PendingEvent, *, now: datetime, timeout: float | None = None) -> None:
        """POST the event, signed at `now` (timezone-aware). `timeout` may shorten (never
        lengthen) the sender's own, so that a caller's budget holds. DeliveryFailed unless
        the receiver answered 2xx."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        seconds = self._timeout if timeout is None else max(0.001, min(self._timeout, timeout))
        signed_at = now.astimezone(UTC)
        body = event.payload.encode("utf-8", errors="surrogatepass")
        headers = {
            "content-type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(math.floor(signed_at.timestamp())),
            "webhook-signature": self._webhook.sign(event.event_id, signed_at, event.payload),
        }
        session = self._get_session()
        request = session.prepare_request(
            requests.Request("POST", self._url, data=body, headers=headers)
        )
        # The adapter, not Session.send: even with allow_redirects=False, Session.send reads
        # a redirect's whole body, with no cap.
        adapter = session.get_adapter(self._url)
        call = self._watchdog.start(seconds)
        try:
            try:
                response = adapter.send(
                    request,
                    stream=True,
                    timeout=(seconds, seconds),
                    verify=session.verify if session.verify is not None else True,
                    proxies=session.proxies,
                )
            except _TRANSPORT_ERRORS as error:
                expired = call.finish()
                raise _transport_failure(error, expired, call.connected, seconds) from None
            try:
                if call.expired:
                    # Cut by the watchdog while the headers came in: what was parsed may be
                    # a truncated head (a trickled header line ends where the cut fell).
                    raise DeliveryFailed(f"timed out after {seconds:g}s", receiver_unavailable=True)
                status = response.status_code
                answer = self._read_capped(response)
            finally:
                response.close()  # what is left unread stays unread: the connection goes
        finally:
            call.finish()
        if 200 <= status < 300:
            return
        raise DeliveryFailed(
            self._refusal(status, answer), receiver_unavailable=status in UNAVAILABLE_STATUSES
        )

    def close(self) -> None:
        self._watchdog.close()
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read_capped(self, response: requests.Response) -> bytes:
        """At most max_response_bytes of the answer; a failure while reading is ignored
        (the status line decided already)."""
        chunks: list[bytes] = []
        size = 0
        try:
            while size < self._max_response_bytes:
                chunk = response.raw.read(
                    min(16 * 1024, self._max_response_bytes - size), decode_content=False
                )
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except _TRANSPORT_ERRORS:
            pass
        return b"".join(chunks)

    def _refusal(self, status: int, answer: bytes) -> str:
        if 300 <= status < 400:
            return f"redirect not followed (HTTP {status})"
        text = answer[: _SNIPPET * 4].decode("utf-8", errors="replace").strip()
        quoted = safe_text(scrub(" ".join(text.split()), *self._secrets), _SNIPPET)
        return safe_text(f"HTTP {status}: {quoted}" if quoted else f"HTTP {status}", REASON_LIMIT)

    def _get_session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            # No urllib3 retries or redirects: delivery decides when to try again.
            adapter = DeadlineAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # Proxy and CA environment read once; ~/.netrc never consulted.
            session.trust_env = False
            session.proxies = requests.utils.get_environ_proxies(self._url)
            session.verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
            session.headers["User-Agent"] = f"tokenrefresh/{__version__}"
            session.headers["Accept"] = "*/*"
            session.headers["Accept-Encoding"] = "identity"
            self._session = session
        return self._session


def _transport_failure(
    error: BaseException, expired: bool, connected: bool, seconds: float
) -> DeliveryFailed:
    """No answer: why, in a few words (exception texts are not quoted: they carry the URL)."""
    if _in_chain(error, ConnectionRefusedError):
        reason = "connection refused"
    elif _in_chain(error, NameResolutionError):
        reason = "host name not found"
    elif isinstance(error, requests.exceptions.SSLError):
        reason = "TLS handshake failed"
    elif isinstance(error, requests.ConnectTimeout) or (expired and not connected):
        reason = f"could not connect within {seconds:g}s"
    elif _in_chain(error, NewConnectionError):
        reason = f"could not connect ({type(error).__name__})"
    elif expired or isinstance(error, requests.ReadTimeout):
        reason = f"timed out after {seconds:g}s"
    else:
        reason = f"connection failed after sending ({type(error).__name__})"
    return DeliveryFailed(reason, receiver_unavailable=True)


def _in_chain(error: BaseException, kind: type[BaseException]) -> bool:
    """True if `kind` is in the error's cause chain (args, .reason, __cause__, __context__)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending and len(seen) < 20:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        for candidate in (
            *current.args,
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
        ):
            if isinstance(candidate, BaseException):
                pending.append(candidate)
    return False
