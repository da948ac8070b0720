"""The TikTok token endpoint, behind one method: `TikTokClient.refresh(refresh_token)`.

Every answer becomes a TokenGrant or one of three exceptions: the user's token was
rejected (UserTokenRejected), the app's credentials were rejected (AppCredentialsRejected),
or the refresh failed without a verdict on the token (RefreshFailed: transient, with any
Retry-After). Nothing above this module sees requests, status codes or JSON.

TikTok answers errors in the body, with statuses that are not documented and have been
seen to be 200, so the body's `error` is read first, whatever the status.
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from tokenrefresh import __version__
from tokenrefresh.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.settings import ClientCredentials

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path

# Error codes by what they say about the refresh token (from TikTok's "OAuth error handling").
USER_REJECTIONS = frozenset({"invalid_grant", "access_denied"})
APP_REJECTIONS = frozenset({"invalid_client", "unauthorized_client"})
RETRYABLE_CODES = frozenset(
    {"server_error", "temporarily_unavailable", "rate_limit_exceeded", "internal_error"}
)

_TOKEN_LIKE = re.compile(r"\b(?:act|rft|clt)\.[A-Za-z0-9._~!*+/=-]{4,}")
_DESCRIPTION_LIMIT = 300


class TikTokClient:
    """Refreshes tokens at TikTok's token endpoint; one requests.Session per thread."""

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        base_url: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
    ) -> None:
        self._credentials = credentials
        self._url = base_url.rstrip("/") + TOKEN_PATH
        self._timeout = (connect_timeout, read_timeout)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def refresh(self, refresh_token: str) -> TokenGrant:
        form = {
            "client_key": self._credentials.client_key,
            "client_secret": self._credentials.client_secret.reveal(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        sent_at = datetime.now(UTC)
        started = time.monotonic()
        try:
            response = self._session().post(
                self._url, data=form, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as error:
            raise _transport_failure(error, time.monotonic() - started) from None
        with response:
            elapsed = time.monotonic() - started
            return _interpret(
                response, sent_at, elapsed, secrets=(refresh_token, form["client_secret"])
            )

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No urllib3 retries: a retried POST can spend a single-use refresh token twice
            # without telling us. The refresher retries where it can classify the failure.
            adapter = HTTPAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False))
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
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session


def _transport_failure(error: requests.RequestException, elapsed: float) -> RefreshFailed:
    """Timeouts and connection errors; says whether TikTok may have seen the request."""
    if isinstance(error, requests.ConnectTimeout) or _never_connected(error):
        return RefreshFailed(
            f"could not connect to TikTok ({type(error).__name__})", elapsed=elapsed
        )
    if isinstance(error, requests.ReadTimeout):
        return RefreshFailed(
            "no answer from TikTok before the read timeout (the token may have been rotated)",
            maybe_processed=True,
            elapsed=elapsed,
        )
    return RefreshFailed(
        f"connection to TikTok failed after sending ({type(error).__name__})",
        maybe_processed=True,
        elapsed=elapsed,
    )


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


def _interpret(
    response: requests.Response, sent_at: datetime, elapsed: float, *, secrets: tuple[str, ...]
) -> TokenGrant:
    status = response.status_code
    log_id = response.headers.get("X-Tt-Logid")
    details: dict[str, Any] = {"http_status": status, "log_id": log_id, "elapsed": elapsed}
    body = _json_object(response)
    if body is not None:
        code, description, body_log_id = _error_fields(body)
        details["log_id"] = body_log_id or log_id
        if code is not None:
            details["error_code"] = code
            reason = _describe(code, description, status, secrets)
            if code in USER_REJECTIONS:
                raise UserTokenRejected(reason, **details)
            if code in APP_REJECTIONS:
                raise AppCredentialsRejected(reason, **details)
            raise RefreshFailed(
                reason,
                retryable=code in RETRYABLE_CODES or status == 429 or status >= 500,
                retry_after=_retry_after(response.headers),
                **details,
            )
    if status == 429 or status >= 500:
        raise RefreshFailed(
            f"HTTP {status} from TikTok", retry_after=_retry_after(response.headers), **details
        )
    if status != 200:
        raise RefreshFailed(f"unexpected HTTP {status} from TikTok", **details)
    if body is None:
        raise RefreshFailed("TikTok's answer is not a JSON object", **details)
    return _grant(body, sent_at, details)


def _grant(body: Mapping[str, Any], sent_at: datetime, details: Mapping[str, Any]) -> TokenGrant:
    access_token = body.get("access_token")
    expires_in = _seconds(body.get("expires_in"))
    if not isinstance(access_token, str) or not access_token or expires_in is None:
        raise RefreshFailed("TikTok's answer lacks a usable access_token or expires_in", **details)
    refresh_token = body.get("refresh_token")
    refresh_expires_in = _seconds(body.get("refresh_expires_in"))
    open_id = body.get("open_id")
    scope = body.get("scope")
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        access_expires_at=sent_at + timedelta(seconds=expires_in),
        refresh_expires_at=(
            sent_at + timedelta(seconds=refresh_expires_in)
            if refresh_expires_in is not None
            else None
        ),
        open_id=open_id if isinstance(open_id, str) and open_id else None,
        scope=scope if isinstance(scope, str) else None,
        http_status=details["http_status"],
        log_id=details["log_id"],
        elapsed=details["elapsed"],
    )


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_fields(body: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(code, description, log_id) of the OAuth or the data-API shape; code None: no error."""
    error = body.get("error")
    if isinstance(error, str) and error:
        return error, _text(body.get("error_description")), _text(body.get("log_id"))
    if isinstance(error, Mapping):
        code = _text(error.get("code"))
        if code in (None, "ok"):
            return None, None, _text(error.get("log_id"))
        return code, _text(error.get("message")), _text(error.get("log_id"))
    return None, None, _text(body.get("log_id"))


def _describe(code: str, description: str | None, status: int, secrets: tuple[str, ...]) -> str:
    text = f"{_clean(code, secrets)} (HTTP {status})"
    if description:
        text += f": {_clean(description, secrets)}"
    return text


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    """TikTok's text, made safe to store and show: no token, no control characters, short."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _TOKEN_LIKE.sub("[redacted]", text)
    text = "".join(char if char.isprintable() else " " for char in text)
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[: _DESCRIPTION_LIMIT - 1] + "…"
    return text


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _seconds(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
