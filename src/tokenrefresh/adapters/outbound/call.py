"""BoundedClient: the one way tokenrefresh sends an HTTP request (TikTok, webhooks, pings).

Each call is one request whose whole life, connect to last byte (trickled headers and
bodies included), ends by its deadline (`deadline.py`); whose answer is read to at most a
cap, still encoded, and then decoded no further than that cap (`body.py`); no redirect is
followed and urllib3 retries nothing (a retried POST could spend a single-use token).

The environment, decided here once for every call:
- Proxies: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (either case) are honoured,
  read explicitly for each URL (as curl does); a SOCKS proxy is bounded per read only.
- CA bundle: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, if set; else certifi's.
- `~/.netrc` is never read: requests would send its credentials silently (trust_env is
  off). Credentials written in a URL's userinfo (`https://user:pw@host/`) are sent as HTTP
  Basic, as requests does; Settings registers their base64 forms with `scrub`.

Failures are `CallFailed` (no answer) or `UnreadableBody` (an answer too large or in an
encoding tokenrefresh cannot read): neither quotes the URL or an exception's text.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests
import urllib3.exceptions
from urllib3.exceptions import NameResolutionError
from urllib3.util.retry import Retry

from tokenrefresh.adapters.outbound.body import (
    UnreadableBody,
    close_delimited,
    decoded,
    read_capped,
)
from tokenrefresh.adapters.outbound.deadline import Call, DeadlineAdapter, Watchdog
from tokenrefresh.base.closing import Closing
from tokenrefresh.base.scrub import register_secret
from tokenrefresh.base.settings import basic_auth_secrets
from tokenrefresh.base.version import __version__

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "Answer", "BoundedClient", "CallFailed", "UnreadableBody"]

DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to connect, never more than the whole call's

# What moving bytes can raise, from requests down to the socket (UnicodeError is a ValueError).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


@dataclass(frozen=True)
class Answer:
    """What came back: the status, the headers, the decoded body (at most the cap) and how
    long the call took, in seconds."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float


class CallFailed(Exception):
    """No usable answer. `sent`: a connection was made, so the receiver may have acted on
    the request; `timed_out`: the deadline (or a stop) ended it; `cause`: a few words
    ("connection refused", "host name not found", "TLS handshake failed") or the error's
    type; `status`: the answer's status if its headers came."""

    def __init__(
        self,
        cause: str,
        *,
        sent: bool,
        timed_out: bool,
        elapsed: float,
        status: int | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.sent = sent
        self.timed_out = timed_out
        self.elapsed = elapsed
        self.status = status


class AnswerUnreadable(UnreadableBody):
    """UnreadableBody with the answer's status and headers (the body was not read)."""

    def __init__(
        self, reason: str, status: int, headers: Mapping[str, str], elapsed: float
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers
        self.elapsed = elapsed


class BoundedClient(Closing):
    """Bounded POSTs: one requests.Session per thread (keep-alive), one watchdog thread.

    `timeout`: seconds for a whole call (a call may ask for less); `max_body_bytes`: the
    most of an answer's body read and decoded (0: the body is not read at all, only the
    status and headers count); `accept`: the Accept header."""

    def __init__(
        self,
        *,
        timeout: float,
        max_body_bytes: int,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        accept: str = "*/*",
    ) -> None:
        if not timeout > 0 or not connect_timeout > 0 or max_body_bytes < 0:
            raise ValueError("timeouts must be positive and max_body_bytes not negative")
        self.timeout = float(timeout)
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_body_bytes = max_body_bytes
        self._accept = accept
        self._watchdog = Watchdog()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._proxies: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float | None = None,
    ) -> Answer:
        """One POST within `timeout` (never more than the client's): its Answer, or
        CallFailed, or AnswerUnreadable."""
        return self.call("POST", url, body, headers, timeout=timeout)

    def call(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float | None = None,
    ) -> Answer:
        """One call (a GET has no body) within `timeout`, bounded as `post`. The URL may
        carry secrets in its query string (a provider that takes its credentials there):
        nothing here shows it, and no exception this raises carries it."""
        seconds = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        started = time.monotonic()
        call = self._watchdog.start(seconds)
        try:
            response = self._send(method, url, body, headers, call, seconds, started)
            try:
                return self._receive(response, call, started)
            finally:
                response.close()  # what is left unread stays unread: the connection goes
        finally:
            call.finish()

    def cancel(self) -> None:
        """End the calls in progress now, as CallFailed(timed_out=True): a stop was asked.
        Safe in a signal handler on the calling thread."""
        self._watchdog.cancel()

    def close(self) -> None:
        self._watchdog.close()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        call: Call,
        seconds: float,
        started: float,
    ) -> requests.Response:
        """The request sent and the answer's headers read; the body is left unread."""
        session = self._session()
        request = session.prepare_request(requests.Request(method, url, data=body, headers=headers))
        # The adapter, not Session.send: even with allow_redirects=False, Session.send reads
        # (and decompresses) a redirect's whole body, with no cap.
        adapter = session.get_adapter(url)
        try:
            return adapter.send(
                request,
                stream=True,
                timeout=(min(self._connect_timeout, seconds), seconds),
                verify=session.verify if session.verify is not None else True,
                proxies=self._proxies_for(url),
            )
        except TRANSPORT_ERRORS as error:
            expired = call.finish()
            timed_out = expired or isinstance(error, requests.Timeout)
            raise CallFailed(
                _cause(error, call.connected),
                sent=call.connected,
                timed_out=timed_out,
                elapsed=time.monotonic() - started,
            ) from None

    def _receive(self, response: requests.Response, call: Call, started: float) -> Answer:
        status, headers = response.status_code, response.headers
        if self._max_body_bytes == 0:
            if call.finish():  # cut while the headers came: they may be a truncated head
                raise _cut_at_deadline(status, started)
            return Answer(status, headers, b"", time.monotonic() - started)
        try:
            raw = read_capped(response.raw, self._max_body_bytes)
            # Past the deadline, a body that only the connection's end delimits may be cut.
            if call.finish() and close_delimited(headers):
                raise _cut_at_deadline(status, started)
            body = decoded(raw, headers, self._max_body_bytes)
        except UnreadableBody as problem:
            raise AnswerUnreadable(
                problem.reason, status, headers, time.monotonic() - started
            ) from None
        except TRANSPORT_ERRORS as error:
            raise CallFailed(
                type(error).__name__,
                sent=True,
                timed_out=call.finish(),
                elapsed=time.monotonic() - started,
                status=status,
            ) from None
        return Answer(status, headers, body, time.monotonic() - started)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL (NO_PROXY applied), read once per URL
        without its query (which may hold a token: one entry per token would grow without
        end); on first sight, the URL's credentials are registered with `scrub` (base64 too)."""
        url = url.split("?", 1)[0]
        with self._lock:
            proxies = self._proxies.get(url)
            if proxies is None:
                register_secret(*basic_auth_secrets(url))
                proxies = self._proxies[url] = dict(requests.utils.get_environ_proxies(url))
            return proxies

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = DeadlineAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.trust_env = False  # no ~/.netrc; proxies and CA bundle: read explicitly
            session.verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
            session.headers["User-Agent"] = f"tokenrefresh/{__version__}"
            session.headers["Accept"] = self._accept
            session.headers["Accept-Encoding"] = "identity"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session


def _cause(error: BaseException, connected: bool) -> str:
    """Why a call got no answer, in a few words (an exception's text carries the URL)."""
    if not connected:
        if in_chain(error, ConnectionRefusedError):
            return "connection refused"
        if in_chain(error, NameResolutionError):
            return "host name not found"
        if isinstance(error, requests.exceptions.SSLError):
            return "TLS handshake failed"
    return type(error).__name__


def in_chain(error: BaseException, kind: type[BaseException]) -> bool:
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


def _cut_at_deadline(status: int, started: float) -> CallFailed:
    """An answer whose head or body the deadline cut: it may be a truncated one."""
    return CallFailed(
        "timed out", sent=True, timed_out=True, elapsed=time.monotonic() - started, status=status
    )
