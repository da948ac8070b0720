"""The TikTok token endpoint, behind one method: `TikTokClient.refresh(refresh_token)`.

Every answer becomes a TokenGrant or one of three exceptions: the user's token was
rejected (UserTokenRejected), the app's credentials were rejected (AppCredentialsRejected),
or the refresh failed without a verdict on the token (RefreshFailed: transient, with any
Retry-After). Nothing above this module sees requests, status codes or JSON.

Two halves. `interpret_answer` is pure: status, headers and body bytes in, a grant or one of
the three exceptions out, whatever the bytes are. `TikTokClient` moves the bytes: one form
POST per refresh, a cap on the body and a total deadline per call, so that no endpoint can
hold a worker (and with it SIGTERM and --max-runtime) longer than `timeout`.

TikTok answers errors in the body, with statuses that are not documented and have been
seen to be 200, so the body's `error` is read whatever the status. But an answer that
carries a new refresh token is a grant whatever else it says: the old token may be spent.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from tokenrefresh import __version__
from tokenrefresh.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.scrub import MASK, safe_text, scrub
from tokenrefresh.settings import ClientCredentials

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_ACCESS_LIFETIME",
    "MAX_REFRESH_LIFETIME",
    "MAX_RETRY_AFTER",
    "TikTokClient",
    "interpret_answer",
]

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte (--http-timeout)
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to connect, never more than the whole call's
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # TikTok's answers are under 2 KiB
MAX_RETRY_AFTER = 3600.0  # seconds: a longer Retry-After (or a date further off) is cut to this
# Longer lifetimes are cut to these: refreshing sooner than needed is always safe.
MAX_ACCESS_LIFETIME = timedelta(days=1)  # the longest TikTok ever documented
MAX_REFRESH_LIFETIME = timedelta(days=366)

TEXT_INPUT_LIMIT = 2_000  # characters of a text from TikTok looked at, at most
REASON_TEXT_LIMIT = 300  # characters of a text from TikTok shown in a reason, at most
OPEN_ID_LIMIT = 255
SCOPE_LIMIT = 10_000

# Error codes by what they say about the refresh token (from TikTok's "OAuth error handling").
USER_REJECTIONS = frozenset({"invalid_grant", "access_denied"})
APP_REJECTIONS = frozenset({"invalid_client", "unauthorized_client"})
RETRYABLE_CODES = frozenset(
    {"server_error", "temporarily_unavailable", "rate_limit_exceeded", "internal_error"}
)
UNRECOGNISED_CODE = "an unrecognised error code"

_TOKEN_LIKE = re.compile(r"\b(?:act|rft|clt)\.[A-Za-z0-9._~!*+/=-]{4,}")
_ERROR_CODE_SHAPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_LOG_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSIGNED_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SIGNED_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER_TEXT_LIMIT = 100  # a longer "number" is not one

_READ_CHUNK = 16 * 1024

# What moving bytes can raise, from requests down to the socket (UnicodeError is a ValueError).
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


# ----------------------------------------------------------------------------- the client


class TikTokClient:
    """Refreshes tokens at TikTok's token endpoint.

    One requests.Session per worker thread (keep-alive), one deadline watchdog thread per
    client. `timeout` bounds a whole call, connect to last byte; `max_body_bytes` the answer.
    """

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not timeout > 0 or not connect_timeout > 0 or max_body_bytes < 1:
            raise ValueError("timeouts and max_body_bytes must be positive")
        self._credentials = credentials
        self._url = base_url.rstrip("/") + TOKEN_PATH
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_body_bytes = max_body_bytes
        self._watchdog = _Watchdog()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Present the refresh token once; a grant, or one of the three outcome exceptions."""
        client_secret = self._credentials.client_secret.reveal()
        form = _form_body(self._credentials.client_key, client_secret, refresh_token)
        secrets = (refresh_token, client_secret)
        sent_at = datetime.now(UTC)
        started = time.monotonic()
        status, headers, body = self._exchange(form, started, secrets)
        return interpret_answer(
            status,
            headers,
            body,
            sent_at=sent_at,
            elapsed=time.monotonic() - started,
            secrets=secrets,
        )

    def close(self) -> None:
        self._watchdog.close()
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _exchange(
        self, form: bytes, started: float, secrets: tuple[str, ...]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One POST within the deadline: status, headers and the decoded, capped body."""
        call = self._watchdog.start(self._timeout)
        try:
            response = self._send(form, call, started)
            try:
                return self._receive(response, call, started, secrets)
            finally:
                response.close()
        finally:
            call.finish()

    def _send(self, form: bytes, call: _Call, started: float) -> requests.Response:
        """The request sent and the answer's headers read; the body is left unread."""
        session = self._session()
        request = session.prepare_request(
            requests.Request(
                "POST", self._url, data=form, headers={"Content-Type": FORM_CONTENT_TYPE}
            )
        )
        # The adapter, not Session.send: even with allow_redirects=False, Session.send reads
        # (and decompresses) a redirect's whole body, with no cap.
        adapter = session.get_adapter(self._url)
        try:
            return adapter.send(
                request,
                stream=True,
                timeout=(self._connect_timeout, self._timeout),
                verify=session.verify if session.verify is not None else True,
                proxies=session.proxies,
            )
        except _TRANSPORT_ERRORS as error:
            expired = call.finish()
            raise self._transport_failure(
                error, expired, call.connected, time.monotonic() - started
            ) from None

    def _receive(
        self,
        response: requests.Response,
        call: _Call,
        started: float,
        secrets: tuple[str, ...],
    ) -> tuple[int, Mapping[str, str], bytes]:
        status, headers = response.status_code, response.headers
        try:
            raw = _read_capped(response.raw, self._max_body_bytes)
            # Past the deadline, a body that only the connection's end delimits may be cut.
            if call.finish() and _close_delimited(headers):
                raise self._deadline_failure(time.monotonic() - started, status)
            return status, headers, _decoded(raw, headers, self._max_body_bytes)
        except _UnreadableBody as problem:
            raise _unread_answer(
                problem.reason, status, headers, time.monotonic() - started, secrets
            ) from None
        except _TRANSPORT_ERRORS as error:
            if call.finish():
                raise self._deadline_failure(time.monotonic() - started, status) from None
            raise RefreshFailed(
                f"connection to TikTok failed while reading the answer ({type(error).__name__})",
                maybe_processed=True,
                http_status=status,
                elapsed=time.monotonic() - started,
            ) from None

    def _transport_failure(
        self, error: BaseException, expired: bool, connected: bool, elapsed: float
    ) -> RefreshFailed:
        """A call that got no answer's headers; says whether TikTok may have seen it."""
        if isinstance(error, requests.ConnectTimeout) or _never_connected(error):
            return RefreshFailed(
                f"could not connect to TikTok ({type(error).__name__})", elapsed=elapsed
            )
        if expired and not connected:  # cut during connect or the TLS handshake: nothing sent
            return RefreshFailed(
                f"could not connect to TikTok within {self._timeout:g} s", elapsed=elapsed
            )
        if expired or isinstance(error, requests.ReadTimeout):
            return self._deadline_failure(elapsed, None)
        return RefreshFailed(
            f"connection to TikTok failed after sending ({type(error).__name__})",
            maybe_processed=True,
            elapsed=elapsed,
        )

    def _deadline_failure(self, elapsed: float, status: int | None) -> RefreshFailed:
        return RefreshFailed(
            f"no complete answer from TikTok within {self._timeout:g} s "
            "(the token may have been rotated)",
            maybe_processed=True,
            http_status=status,
            elapsed=elapsed,
        )

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No urllib3 retries: a retried POST can spend a single-use refresh token twice
            # without telling us. The refresher retries where it can classify the failure.
            adapter = _DeadlineAdapter(
                max_retries=Retry(total=0, redirect=0, raise_on_status=False)
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # The proxy and CA environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read
            # once here instead of on every call, and ~/.netrc is never consulted.
            session.trust_env = False
            session.proxies = requests.utils.get_environ_proxies(self._url)
            session.verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
            session.headers["User-Agent"] = f"tokenrefresh/{__version__}"
            session.headers["Accept"] = "application/json"
            session.headers["Accept-Encoding"] = "identity"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session


def _form_body(client_key: str, client_secret: str, refresh_token: str) -> bytes:
    """The form as requests would encode it; a lone surrogate in a stored token is sent as
    its bytes (surrogatepass, as the cipher stores it) instead of raising UnicodeEncodeError."""
    form = {
        "client_key": client_key,
        "client_secret": client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }
    return urlencode(form, encoding="utf-8", errors="surrogatepass").encode("ascii")


def _never_connected(error: BaseException) -> bool:
    """True if the cause chain shows the TCP connection was never established."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, NewConnectionError | NameResolutionError):
            return True
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        reason = getattr(seen, "reason", None)
        seen = inner or (reason if isinstance(reason, BaseException) else None) or seen.__cause__
    return False


# ----------------------------------------------------------------------------- the body


class _UnreadableBody(Exception):
    """The answer's body could not be read in full: too large, or an unknown encoding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_capped(raw: Any, limit: int) -> bytes:
    """The raw (still encoded) body; _UnreadableBody as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = raw.read(min(_READ_CHUNK, limit + 1 - size), decode_content=False)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _UnreadableBody(f"TikTok's answer is larger than {_size_text(limit)}")


def _decoded(raw: bytes, headers: Mapping[str, str], limit: int) -> bytes:
    """The body with its Content-Encoding undone, never expanding past `limit` bytes.

    Accept-Encoding: identity asks for none, but an answer compressed anyway may still carry
    a new token pair, so gzip and deflate are read rather than dropped."""
    encodings = [
        part.strip().lower() for part in (_header(headers, "Content-Encoding") or "").split(",")
    ]
    encodings = [encoding for encoding in encodings if encoding not in ("", "identity")]
    if not encodings:
        return raw
    if len(encodings) > 1 or encodings[0] not in ("gzip", "x-gzip", "deflate"):
        raise _UnreadableBody("TikTok's answer has a Content-Encoding tokenrefresh cannot read")
    if encodings[0] == "deflate":
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)  # zlib-wrapped, as the RFC says
        except zlib.error:
            return _inflate_or_fail(raw, -zlib.MAX_WBITS, limit)  # raw deflate, as some send
    return _inflate_or_fail(raw, 32 + zlib.MAX_WBITS, limit)  # gzip (or zlib) header


def _inflate_or_fail(data: bytes, wbits: int, limit: int) -> bytes:
    try:
        return _inflate(data, wbits, limit)
    except zlib.error:
        raise _UnreadableBody("TikTok's compressed answer is corrupt") from None


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Decompressed, but never more than `limit` bytes of output (a gzip bomb stops here)."""
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _UnreadableBody(f"TikTok's answer is larger than {_size_text(limit)} decompressed")
    return out


def _close_delimited(headers: Mapping[str, str]) -> bool:
    """True if only the connection's end marks the end of the body (no length, not chunked)."""
    chunked = "chunked" in (_header(headers, "Transfer-Encoding") or "").lower()
    return not chunked and _header(headers, "Content-Length") is None


def _unread_answer(
    reason: str, status: int, headers: Mapping[str, str], elapsed: float, secrets: tuple[str, ...]
) -> RefreshFailed:
    """An answer whose body was not read: if it was a 200, TikTok may have rotated the token."""
    rotated = status == 200
    if rotated:
        reason += " (the token may have been rotated)"
    return RefreshFailed(
        reason,
        maybe_processed=rotated,
        http_status=status,
        log_id=_identifier(_header(headers, "X-Tt-Logid"), _LOG_ID_SHAPE, secrets),
        elapsed=elapsed,
    )


def _size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"


# ----------------------------------------------------------------------------- the deadline
#
# requests and urllib3 only bound each socket operation, so an answer trickled a byte at a
# time holds a call for as long as the sender likes. A watchdog thread (one per client)
# shuts down the socket of a call whose deadline passed; the blocked read then returns at
# once. Sockets reach the call in progress on their thread through connection and pool
# subclasses: a new socket as soon as it is connected (before TLS), a connection's final
# socket after connect() (TLS-wrapped, tunnelled through a proxy), and a reused keep-alive
# connection when the pool hands it out.

_ACTIVE = threading.local()  # .call: the _Call in progress on this thread, if any


class _Call:
    """One call's deadline, whether it passed, and the sockets and connections it used.

    `connected`: a connection was established (TLS included), so the request may be sent."""

    def __init__(self, watchdog: _Watchdog, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.connected = False
        self._watchdog = watchdog
        self._parts: list[object] = []
        self._finished = False

    def attach(self, part: object, *, connected: bool) -> None:
        """Watch this socket or connection too; shut it down at once if already expired."""
        with self._watchdog.lock:
            if self._finished:
                return
            self.connected = self.connected or connected
            self._parts.append(part)
            if self.expired:
                _shut_down(part)

    def expire(self) -> None:
        """The deadline passed: shut down everything the call uses (caller holds the lock)."""
        if self.expired or self._finished:
            return
        self.expired = True
        for part in self._parts:
            _shut_down(part)

    def finish(self) -> bool:
        """Stop watching (idempotent); True if the deadline passed first."""
        with self._watchdog.lock:
            if not self._finished:
                self._finished = True
                self._watchdog.forget(self)
            if getattr(_ACTIVE, "call", None) is self:
                _ACTIVE.call = None
            return self.expired


class _Watchdog:
    """One thread per client that expires calls past their deadline (started on first use)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._calls: set[_Call] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, seconds: float) -> _Call:
        """A call of at most `seconds` begins on this thread."""
        call = _Call(self, time.monotonic() + seconds)
        with self.lock:
            self._calls.add(call)
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="tokenrefresh-deadlines", daemon=True
                )
                self._thread.start()
            self.lock.notify()
        _ACTIVE.call = call
        return call

    def forget(self, call: _Call) -> None:
        """(Caller holds the lock.)"""
        self._calls.discard(call)

    def close(self) -> None:
        with self.lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self.lock.notify()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        with self.lock:
            while not stop.is_set():
                self.lock.wait(self._expire_due())

    def _expire_due(self) -> float | None:
        """Expire the calls past their deadline; seconds to the next one (None: no call)."""
        now = time.monotonic()
        waits = []
        for call in self._calls:
            if call.deadline <= now:
                call.expire()
            else:
                waits.append(call.deadline - now)
        return min(waits, default=None)


def _attach(part: object, *, connected: bool = False) -> None:
    call: _Call | None = getattr(_ACTIVE, "call", None)
    if call is not None:
        call.attach(part, connected=connected)


def _shut_down(part: object) -> None:
    """Shut down a socket, or a connection's sockets: a read blocked on them returns."""
    sock = getattr(part, "sock", None)  # a connection's socket, SSL socket or TLS-in-TLS transport
    for candidate in (part, sock, getattr(sock, "socket", None)):
        if isinstance(candidate, socket.socket) and candidate.fileno() != -1:
            with contextlib.suppress(OSError):
                # The base class's method: SSLSocket.shutdown would also drop the SSL object
                # under the reading thread's feet.
                socket.socket.shutdown(candidate, socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _attach(self, connected=True)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        # Before the TLS handshake, which a trickle could stretch too. (urllib3 2 also sets
        # self.sock this early, which the connection's own attachment sees; this does not
        # rely on it.)
        _attach(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _attach(self, connected=True)  # the TLS socket now in self.sock


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        # A reused keep-alive connection has its socket already: it is connected.
        _attach(connection, connected=getattr(connection, "sock", None) is not None)
        return connection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        _attach(connection, connected=getattr(connection, "sock", None) is not None)
        return connection


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class _DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools, direct or through an HTTP(S) proxy, are watched.

    A SOCKS proxy keeps urllib3's own pools: its calls are bounded per read only."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


# ----------------------------------------------------------------------------- the answer


def interpret_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    sent_at: datetime,
    elapsed: float,
    secrets: tuple[str, ...],
) -> TokenGrant:
    """One answer of the token endpoint as a TokenGrant, or one of the three outcome exceptions.

    Pure, and total: whatever the bytes, nothing else is raised. `secrets` (the refresh token
    presented, the client secret) never appear in a reason, nor does any token in the body.
    """
    fields, notes = _json_object(body)
    secrets = (*secrets, *_tokens_in(fields))
    details: dict[str, Any] = {
        "http_status": status,
        "log_id": _log_id(fields, headers, secrets),
        "elapsed": elapsed,
    }
    if fields is not None and _non_empty_str(fields.get("refresh_token")) is not None:
        # A new refresh token may mean the old one is spent: keeping it is the only safe choice.
        return _grant(fields, status, sent_at, details, secrets, notes)
    if fields is not None:
        _raise_error_field(fields, status, headers, details, secrets)
    if status == 429 or status >= 500:
        raise RefreshFailed(
            f"HTTP {status} from TikTok", retry_after=_retry_after(headers), **details
        )
    if status != 200:
        raise RefreshFailed(f"unexpected HTTP {status} from TikTok", **details)
    if fields is None:
        raise RefreshFailed("TikTok's answer is not a JSON object", **details)
    if _non_empty_str(fields.get("access_token")) is None:
        raise RefreshFailed(
            "TikTok's answer carries neither an access token nor a refresh token", **details
        )
    return _grant(fields, status, sent_at, details, secrets, notes)


def _raise_error_field(
    fields: Mapping[str, Any],
    status: int,
    headers: Mapping[str, str],
    details: dict[str, Any],
    secrets: tuple[str, ...],
) -> None:
    """Raise the outcome the body's `error` names, if it names one."""
    code, description = _error_of(fields)
    if code is None:
        return
    shown_code = _identifier(code, _ERROR_CODE_SHAPE, secrets)
    reason = f"{shown_code or UNRECOGNISED_CODE} (HTTP {status})"
    if description:
        reason += f": {_shown(description, secrets)}"
    details = {**details, "error_code": shown_code}
    if shown_code in USER_REJECTIONS:
        raise UserTokenRejected(reason, **details)
    if shown_code in APP_REJECTIONS:
        raise AppCredentialsRejected(reason, **details)
    raise RefreshFailed(
        reason,
        retryable=shown_code in RETRYABLE_CODES or status == 429 or status >= 500,
        retry_after=_retry_after(headers),
        **details,
    )


def _grant(
    fields: Mapping[str, Any],
    status: int,
    sent_at: datetime,
    details: Mapping[str, Any],
    secrets: tuple[str, ...],
    notes: tuple[str, ...],
) -> TokenGrant:
    """The grant in an answer that has at least one token; what was odd goes into notes."""
    access_token = _non_empty_str(fields.get("access_token"))
    refresh_token = _non_empty_str(fields.get("refresh_token"))
    odd = list(notes)
    if refresh_token is None:
        odd.append("no refresh_token: the stored one is kept")
    else:
        odd += _beside_a_new_token(fields, status, secrets, pair=access_token is not None)
    access_expires_at = _access_expiry(fields, access_token, sent_at, odd)
    refresh_expires_at = _refresh_expiry(fields, sent_at, odd)
    open_id = _field_text(fields, "open_id", OPEN_ID_LIMIT, odd, allow_empty=False)
    scope = _field_text(fields, "scope", SCOPE_LIMIT, odd, allow_empty=True)
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        access_expires_at=access_expires_at,
        refresh_expires_at=refresh_expires_at,
        open_id=open_id,
        scope=scope,
        http_status=details["http_status"],
        log_id=details["log_id"],
        elapsed=details["elapsed"],
        notes=tuple(odd),
    )


def _access_expiry(
    fields: Mapping[str, Any], access_token: str | None, sent_at: datetime, notes: list[str]
) -> datetime:
    """When the access token expires; sent_at (due at once) when no token or no usable
    lifetime came, so that the next run refreshes again."""
    if access_token is None:
        notes.append("no usable access_token: the stored one is kept and refreshed by the next run")
        return sent_at
    lifetime, note = _lifetime("expires_in", fields, MAX_ACCESS_LIFETIME, "1 day")
    if lifetime is None:
        notes.append(f"{note}: the access token is refreshed again by the next run")
        return sent_at
    notes += [note] if note else []
    return sent_at + lifetime


def _refresh_expiry(
    fields: Mapping[str, Any], sent_at: datetime, notes: list[str]
) -> datetime | None:
    """When the refresh token expires; None (keep the stored expiry) without a usable lifetime."""
    lifetime, note = _lifetime("refresh_expires_in", fields, MAX_REFRESH_LIFETIME, "366 days")
    if lifetime is None:
        notes.append(f"{note}: the stored refresh expiry is kept")
        return None
    notes += [note] if note else []
    return sent_at + lifetime


def _beside_a_new_token(
    fields: Mapping[str, Any], status: int, secrets: tuple[str, ...], *, pair: bool
) -> list[str]:
    """Notes for a new refresh token that came with an error status or an error field."""
    what = "a new token pair" if pair else "a new refresh token"
    notes = []
    if status != 200:
        notes.append(f"HTTP {status} with {what}")
    code, _ = _error_of(fields)
    if code is not None:
        shown = _identifier(code, _ERROR_CODE_SHAPE, secrets) or UNRECOGNISED_CODE
        notes.append(f"error {shown} beside {what}: kept")
    return notes


def _lifetime(
    name: str, fields: Mapping[str, Any], cap: timedelta, cap_text: str
) -> tuple[timedelta | None, str]:
    """A lifetime field as a timedelta (None: missing or unusable), and a note ('' if none)."""
    seconds = _positive_seconds(fields.get(name))
    if seconds is None:
        return None, f"{name} missing or unusable"
    if seconds > Decimal(cap.total_seconds()):
        return cap, f"{name} clamped to {cap_text}"
    return timedelta(seconds=float(seconds)), ""


def _positive_seconds(value: object) -> Decimal | None:
    """A finite, positive number of seconds, from a JSON number or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _NUMBER_TEXT_LIMIT or not _UNSIGNED_NUMBER.fullmatch(text):
            return None
        value = _number(text)
    if isinstance(value, int | float):  # not from the parser (Decimal), but from callers' dicts
        value = Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and value > 0:
        return value
    return None


def _field_text(
    fields: Mapping[str, Any], name: str, limit: int, notes: list[str], *, allow_empty: bool
) -> str | None:
    """A text field made safe for the database (no control character, bounded)."""
    value = fields.get(name)
    if value is None or (value == "" and not allow_empty):
        return None
    if not isinstance(value, str):
        notes.append(f"{name} is not a string: ignored")
        return None
    shown = safe_text(value, limit)
    if shown != value:
        notes.append(f"{name} had control characters escaped or was cut to {limit} characters")
    return shown


def _error_of(fields: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(code, description) of the OAuth or the data-API error shape; code None: no error."""
    error = fields.get("error")
    if isinstance(error, str) and error:
        return error, _non_empty_str(fields.get("error_description"))
    if isinstance(error, Mapping):
        code = _non_empty_str(error.get("code"))
        if code in (None, "ok"):
            return None, None
        return code, _non_empty_str(error.get("message"))
    return None, None


def _log_id(
    fields: Mapping[str, Any] | None, headers: Mapping[str, str], secrets: tuple[str, ...]
) -> str | None:
    """The body's log_id (either shape), else the X-Tt-Logid header: only if it looks like one."""
    candidates: list[object] = []
    if fields is not None:
        error = fields.get("error")
        if isinstance(error, Mapping):
            candidates.append(error.get("log_id"))
        candidates.append(fields.get("log_id"))
    candidates.append(_header(headers, "X-Tt-Logid"))
    for candidate in candidates:
        log_id = _identifier(candidate, _LOG_ID_SHAPE, secrets)
        if log_id is not None:
            return log_id
    return None


def _identifier(value: object, shape: re.Pattern[str], secrets: tuple[str, ...]) -> str | None:
    """The value if it has the shape and holds no fragment of a secret or token, else None."""
    if not isinstance(value, str) or not shape.fullmatch(value):
        return None
    if _TOKEN_LIKE.search(value) or scrub(value, *secrets) != value:
        return None
    return value


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """Text from TikTok, safe to store and show: no fragment of a secret or token, no
    control character, at most REASON_TEXT_LIMIT characters."""
    scrubbed = scrub(text[:TEXT_INPUT_LIMIT], *secrets)
    return safe_text(_TOKEN_LIKE.sub(MASK, scrubbed), REASON_TEXT_LIMIT)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds from now (delta-seconds or an HTTP date), within [0, 3600];
    None if absent or unreadable."""
    value = _header(headers, "Retry-After")
    if value is None:
        return None
    text = value.strip()
    if len(text) > _NUMBER_TEXT_LIMIT:
        return None
    if _SIGNED_NUMBER.fullmatch(text):
        seconds = float(_number(text))  # inf for an absurd exponent: clamped below
    else:
        seconds_or_none = _seconds_until(text)
        if seconds_or_none is None:
            return None
        seconds = seconds_or_none
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _json_object(body: bytes) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The body as a JSON object (None if it is not one), and a note if bytes were replaced.

    Numbers come as Decimal, so no size of number can overflow. Invalid UTF-8 is replaced
    rather than refused: a stray byte in a description must not cost a new token pair."""
    try:
        return _as_object(_loads(body)), ()
    except UnicodeDecodeError:
        pass
    except (ValueError, RecursionError):
        return None, ()
    try:
        value = _loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None, ()
    return _as_object(value), ("the answer is not valid UTF-8: invalid bytes were replaced",)


def _loads(document: bytes | str) -> object:
    return json.loads(document, parse_int=_number, parse_float=_number)


def _number(text: str) -> Decimal:
    """A JSON number, exactly; an exponent too large even for Decimal gives ±Infinity or 0."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(float(text))  # float() saturates to inf or 0.0 instead of failing


def _as_object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _tokens_in(fields: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The tokens an answer carries: never to be shown in anything made from it."""
    if fields is None:
        return ()
    tokens = (fields.get("access_token"), fields.get("refresh_token"))
    return tuple(token for token in tokens if isinstance(token, str) and token)


def _non_empty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None
