"""TikTokClient: moves the bytes of one refresh, code exchange or revoke. One form POST per
call (`_post`, shared by all three) through `outbound.BoundedClient`: a cap on the body and a
total deadline, so that no endpoint can hold a worker (and with it SIGTERM and --max-runtime)
longer than `timeout`. What the bytes mean: `answer.py`, `code_answer.py`, `revoke_answer.py`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from tokenrefresh.adapters.oauth.reading import Answer
from tokenrefresh.adapters.outbound.call import (
    DEFAULT_CONNECT_TIMEOUT,
    AnswerUnreadable,
    BoundedClient,
    CallFailed,
)
from tokenrefresh.adapters.tiktok.answer import ROTATED, interpret_answer, unread_answer
from tokenrefresh.adapters.tiktok.code_answer import CODE_USED, interpret_code_answer
from tokenrefresh.adapters.tiktok.revoke_answer import REVOKED, interpret_revoke_answer
from tokenrefresh.base.outcomes import (
    RefreshFailed,
    TokenGrant,
)
from tokenrefresh.base.settings import ClientCredentials

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT", "TikTokClient"]

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path
REVOKE_PATH = "/v2/oauth/revoke/"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte (--http-timeout)
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # TikTok's answers are under 2 KiB


# ----------------------------------------------------------------------------- the client


class TikTokClient:
    """Refreshes, exchanges and revokes tokens at TikTok's OAuth endpoints.

    Every call is one form POST through `_post` (a BoundedClient: one session per worker
    thread): `timeout` bounds the whole call, connect to last byte; `max_body_bytes` the
    answer; no redirect is followed, nothing retried.
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
        self._http = BoundedClient(
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_body_bytes=max_body_bytes,
            accept="application/json",
        )

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Present the refresh token once; a grant, or one of the three outcome exceptions."""
        secrets = (refresh_token, self._credentials.client_secret.reveal())
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return interpret_answer(self._post(self._url, fields, secrets, ROTATED), secrets)

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
        return interpret_code_answer(self._post(self._url, fields, secrets, CODE_USED), secrets)

    def revoke(self, access_token: str) -> None:
        """Revoke the user's access token (and with it the app's access to the account).

        Returns only when TikTok said so; see `revoke_answer.py` for the rest."""
        if not access_token:
            raise ValueError("an access token is required")
        secrets = (access_token, self._credentials.client_secret.reveal())
        answer = self._post(self._revoke_url, {"token": access_token}, secrets, REVOKED)
        interpret_revoke_answer(answer, secrets)

    def close(self) -> None:
        self._http.close()

    def _post(
        self, url: str, fields: Mapping[str, str], secrets: tuple[str, ...], if_processed: str
    ) -> Answer:
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
        try:
            answer = self._http.post(url, form, {"Content-Type": FORM_CONTENT_TYPE})
        except AnswerUnreadable as problem:
            raise unread_answer(
                f"TikTok's {problem.reason}",
                problem.status,
                problem.headers,
                problem.elapsed,
                secrets,
                if_processed=if_processed,
            ) from None
        except CallFailed as failure:
            raise self._failure(failure, if_processed) from None
        return Answer(answer.status, answer.headers, answer.body, sent_at, answer.elapsed)

    def _failure(self, failure: CallFailed, if_processed: str) -> RefreshFailed:
        """A call without an answer; says whether TikTok may have seen it."""
        elapsed = failure.elapsed
        if not failure.sent:
            if failure.timed_out:
                reason = f"could not connect to TikTok within {self._timeout:g} s"
            else:
                reason = f"could not connect to TikTok ({failure.cause})"
            return RefreshFailed(reason, elapsed=elapsed)
        if failure.timed_out:
            reason = f"no complete answer from TikTok within {self._timeout:g} s ({if_processed})"
        elif failure.status is None:
            reason = f"connection to TikTok failed after sending ({failure.cause})"
        else:
            reason = f"connection to TikTok failed while reading the answer ({failure.cause})"
        return RefreshFailed(
            reason, maybe_processed=True, http_status=failure.status, elapsed=elapsed
        )


def _form_body(form: Mapping[str, str]) -> bytes:
    """The form as requests would encode it; a lone surrogate in a stored token is sent as
    its bytes (surrogatepass, as the cipher stores it) instead of raising UnicodeEncodeError."""
    return urlencode(form, encoding="utf-8", errors="surrogatepass").encode("ascii")
