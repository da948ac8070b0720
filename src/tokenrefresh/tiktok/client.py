"""TikTokClient: moves the bytes of one refresh. One form POST per call, a cap on the body,
and a total deadline (see `deadline.py`), so that no endpoint can hold a worker (and with
it SIGTERM and --max-runtime) longer than `timeout`. What the bytes mean: `answer.py`."""

from __future__ import annotations

import http.client
import os
import threading
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from tokenrefresh import __version__
from tokenrefresh.outcomes import (
    RefreshFailed,
    TokenGrant,
)
from tokenrefresh.settings import ClientCredentials
from tokenrefresh.tiktok.answer import header_value, interpret_answer, unread_answer
from tokenrefresh.tiktok.deadline import Call, DeadlineAdapter, Watchdog

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT", "TikTokClient"]

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte (--http-timeout)
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to connect, never more than the whole call's
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # TikTok's answers are under 2 KiB
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
        self._watchdog = Watchdog()
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

    def _send(self, form: bytes, call: Call, started: float) -> requests.Response:
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
        call: Call,
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
            raise unread_answer(
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
            adapter = DeadlineAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False))
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
        part.strip().lower()
        for part in (header_value(headers, "Content-Encoding") or "").split(",")
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
    chunked = "chunked" in (header_value(headers, "Transfer-Encoding") or "").lower()
    return not chunked and header_value(headers, "Content-Length") is None


def _size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"
