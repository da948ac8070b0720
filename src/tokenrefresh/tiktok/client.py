"""TikTokClient: moves the bytes of one refresh, code exchange or revoke. One form POST per
call (`_post`, shared by all three), a cap on the body (`body.py`) and a total deadline (see
`deadline.py`), so that no endpoint can hold a worker (and with it SIGTERM and --max-runtime)
longer than `timeout`. What the bytes mean: `answer.py`, `code_answer.py`, `revoke_answer.py`."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
from tokenrefresh.tiktok.answer import ROTATED, interpret_answer, unread_answer
from tokenrefresh.tiktok.body import UnreadableBody, close_delimited, decoded, read_capped
from tokenrefresh.tiktok.code_answer import CODE_USED, interpret_code_answer
from tokenrefresh.tiktok.deadline import Call, DeadlineAdapter, Watchdog
from tokenrefresh.tiktok.revoke_answer import REVOKED, interpret_revoke_answer

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT", "TikTokClient"]

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path
REVOKE_PATH = "/v2/oauth/revoke/"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte (--http-timeout)
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to connect, never more than the whole call's
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # TikTok's answers are under 2 KiB

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
    """Refreshes, exchanges and revokes tokens at TikTok's OAuth endpoints.

    One requests.Session per worker thread (keep-alive), one deadline watchdog thread per
    client. Every call is one form POST through `_post`: `timeout` bounds the whole call,
    connect to last byte; `max_body_bytes` the answer; no redirect is followed, nothing retried.
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
        self._revoke_url = base_url.rstrip("/") + REVOKE_PATH
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_body_bytes = max_body_bytes
        self._watchdog = Watchdog()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Present the refresh token once; a grant, or one of the three outcome exceptions."""
        secrets = (refresh_token, self._credentials.client_secret.reveal())
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        answer = self._post(self._url, fields, secrets, ROTATED)
        return interpret_answer(
            answer.status,
            answer.headers,
            answer.body,
            sent_at=answer.sent_at,
            elapsed=answer.elapsed,
            secrets=secrets,
        )

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        """Exchange an authorization code (single use) for a new account's token pair.

        `redirect_uri` must be exactly the one of the authorize request; `code_verifier` is
        sent only when given (PKCE, desktop apps). A grant always has a refresh token and an
        open_id; else one of the three outcome exceptions (see `code_answer.py`)."""
        if not code or not redirect_uri or code_verifier == "":
            raise ValueError(
                "the code and redirect_uri must not be empty, nor a code_verifier given"
            )
        client_secret = self._credentials.client_secret.reveal()
        secrets = (
            (code, client_secret) if code_verifier is None else (code, client_secret, code_verifier)
        )
        fields = {"code": code, "grant_type": "authorization_code", "redirect_uri": redirect_uri}
        if code_verifier is not None:
            fields["code_verifier"] = code_verifier
        answer = self._post(self._url, fields, secrets, CODE_USED)
        return interpret_code_answer(
            answer.status,
            answer.headers,
            answer.body,
            sent_at=answer.sent_at,
            elapsed=answer.elapsed,
            secrets=secrets,
        )

    def revoke(self, access_token: str) -> None:
        """Revoke the user's access token (and with it the app's access to the account).

        Returns only when TikTok said so; see `revoke_answer.py` for the rest."""
        if not access_token:
            raise ValueError("an access token is required")
        secrets = (access_token, self._credentials.client_secret.reveal())
        answer = self._post(self._revoke_url, {"token": access_token}, secrets, REVOKED)
        interpret_revoke_answer(
            answer.status, answer.headers, answer.body, elapsed=answer.elapsed, secrets=secrets
        )

    def close(self) -> None:
        self._watchdog.close()
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _post(
        self, url: str, fields: Mapping[str, str], secrets: tuple[str, ...], if_processed: str
    ) -> _Posted:
        """One form POST of the app's credentials and `fields` within the deadline: status,
        headers and the decoded, capped body. `if_processed`: what a failure after sending
        may have done at TikTok ("the token may have been rotated")."""
        form = _form_body(
            {
                "client_key": self._credentials.client_key,
                "client_secret": self._credentials.client_secret.reveal(),
                **fields,
            }
        )
        sent_at = datetime.now(UTC)
        started = time.monotonic()
        call = self._watchdog.start(self._timeout)
        try:
            response = self._send(url, form, call, started, if_processed)
            try:
                status, headers, body = self._receive(
                    response, call, started, secrets, if_processed
                )
            finally:
                response.close()
        finally:
            call.finish()
        return _Posted(status, headers, body, sent_at, time.monotonic() - started)

    def _send(
        self, url: str, form: bytes, call: Call, started: float, if_processed: str
    ) -> requests.Response:
        """The request sent and the answer's headers read; the body is left unread."""
        session = self._session()
        request = session.prepare_request(
            requests.Request("POST", url, data=form, headers={"Content-Type": FORM_CONTENT_TYPE})
        )
        # The adapter, not Session.send: even with allow_redirects=False, Session.send reads
        # (and decompresses) a redirect's whole body, with no cap.
        adapter = session.get_adapter(url)
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
                error, expired, call.connected, time.monotonic() - started, if_processed
            ) from None

    def _receive(
        self,
        response: requests.Response,
        call: Call,
        started: float,
        secrets: tuple[str, ...],
        if_processed: str,
    ) -> tuple[int, Mapping[str, str], bytes]:
        status, headers = response.status_code, response.headers
        try:
            raw = read_capped(response.raw, self._max_body_bytes)
            # Past the deadline, a body that only the connection's end delimits may be cut.
            if call.finish() and close_delimited(headers):
                raise self._deadline_failure(time.monotonic() - started, status, if_processed)
            return status, headers, decoded(raw, headers, self._max_body_bytes)
        except UnreadableBody as problem:
            raise unread_answer(
                problem.reason,
                status,
                headers,
                time.monotonic() - started,
                secrets,
                if_processed=if_processed,
            ) from None
        except _TRANSPORT_ERRORS as error:
            if call.finish():
                raise self._deadline_failure(
                    time.monotonic() - started, status, if_processed
                ) from None
            raise RefreshFailed(
                f"connection to TikTok failed while reading the answer ({type(error).__name__})",
                maybe_processed=True,
                http_status=status,
                elapsed=time.monotonic() - started,
            ) from None

    def _transport_failure(
        self,
        error: BaseException,
        expired: bool,
        connected: bool,
        elapsed: float,
        if_processed: str,
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
            return self._deadline_failure(elapsed, None, if_processed)
        return RefreshFailed(
            f"connection to TikTok failed after sending ({type(error).__name__})",
            maybe_processed=True,
            elapsed=elapsed,
        )

    def _deadline_failure(
        self, elapsed: float, status: int | None, if_processed: str
    ) -> RefreshFailed:
        return RefreshFailed(
            f"no complete answer from TikTok within {self._timeout:g} s ({if_processed})",
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
            # once here instead of on every call, and ~/.netrc is never consulted. Both
            # endpoints are on one host: the token URL's proxies serve the revoke URL too.
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


@dataclass(frozen=True)
class _Posted:
    """What one POST brought back, and when it was sent (expiries count from then)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at: datetime
    elapsed: float


def _form_body(form: Mapping[str, str]) -> bytes:
    """The form as requests would encode it; a lone surrogate in a stored token is sent as
    its bytes (surrogatepass, as the cipher stores it) instead of raising UnicodeEncodeError."""
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
