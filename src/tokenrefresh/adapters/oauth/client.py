"""ProviderClient: moves the bytes of one refresh or revoke for any provider, as its profile
says. One bounded call each, through `outbound.BoundedClient` (a cap on the body, a total
deadline, no redirect followed, nothing retried), the same hardening as the TikTok client's;
what the bytes mean is `answer.py`'s."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tokenrefresh.adapters.oauth.answer import (
    ROTATED,
    interpret_answer,
    raise_error_field,
    token_fields,
)
from tokenrefresh.adapters.oauth.code import CODE_USED, exchange_request, interpret_code_answer
from tokenrefresh.adapters.oauth.reading import (
    Answer,
    log_id,
    raise_if_busy,
    read_answer,
)
from tokenrefresh.adapters.oauth.request import (
    Request,
    long_lived_request,
    refresh_request,
    revoke_request,
    with_base_url,
)
from tokenrefresh.adapters.outbound.call import (
    DEFAULT_CONNECT_TIMEOUT,
    AnswerUnreadable,
    BoundedClient,
    CallFailed,
)
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UnusableGrant,
)
from tokenrefresh.base.providers import Profile
from tokenrefresh.base.settings import ClientCredentials

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT", "ProviderClient"]

DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # token answers are under 2 KiB
REVOKED = "the token may have been revoked"
LONG_LIVED = "the short-lived token may have been exchanged"
ALREADY_INVALID = "the token is already invalid"


class ProviderClient:
    """Refreshes and revokes tokens at one provider's endpoints, for one app.

    `credentials`: the app's client id and secret (None for a provider whose refresh needs
    none, such as Instagram's); `base_url`: replaces the scheme, host and port of every URL
    of the profile (a stand-in, a proxy)."""

    def __init__(
        self,
        profile: Profile,
        *,
        credentials: ClientCredentials | None,  # None: the provider needs none
        base_url: str | None = None,  # a stand-in's or a proxy's scheme, host and port
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if profile.template or profile.urls.refresh_url is None:
            raise ValueError(f"the {profile.name} profile is a template: extend it with URLs")
        if profile.client.auth != "none" and credentials is None:
            raise ValueError(f"the {profile.name} profile needs the app's credentials")
        self.profile = profile
        self._credentials = credentials
        self._refresh_url = with_base_url(profile.urls.refresh_url, base_url)
        token = profile.urls.token
        self._token_url = with_base_url(token, base_url) if token else None
        revoke = profile.urls.revoke
        self._revoke_url = with_base_url(revoke, base_url) if revoke else None
        long_lived = profile.urls.long_lived
        self._long_lived_url = with_base_url(long_lived, base_url) if long_lived else None
        self._timeout = timeout
        self._http = BoundedClient(
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_body_bytes=max_body_bytes,
            accept="application/json",
        )

    def refresh(self, token: str) -> TokenGrant:
        """Present `token` (the refresh token, or the access token where the profile says
        so) once; a grant, or one of the three outcome exceptions."""
        secrets = self._secrets(token)
        request = refresh_request(self.profile, self._credentials, token, self._refresh_url)
        grant = interpret_answer(self.call(request, secrets, ROTATED), self.profile, secrets)
        if self.profile.refresh.presents == "access_token" and grant.access_token:
            # The new access token is also what the next refresh presents: it goes in the
            # refresh-token slot too, with its expiry (see `accounts import`).
            return replace(
                grant,
                refresh_token=grant.access_token,
                refresh_expires_at=grant.access_expires_at,
            )
        return grant

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        """Exchange an authorization code (single use) for a new account's tokens: a grant
        that can be stored (`code.interpret_code_answer`; `open_id` None where the answer
        names no user), or one of the three outcome exceptions."""
        if not code or not redirect_uri or code_verifier == "":
            raise ValueError(
                "the code and redirect_uri must not be empty, nor a code_verifier given"
            )
        if self._token_url is None:
            raise ValueError(f"the {self.profile.name} profile has no token URL")
        secrets = tuple(
            secret for secret in (*self._secrets(code), code_verifier) if secret is not None
        )
        request = exchange_request(
            self.profile,
            self._credentials,
            self._token_url,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )
        grant = interpret_code_answer(self.call(request, secrets, CODE_USED), self.profile, secrets)
        if self._long_lived_url is None:
            return grant
        return self._long_lived(grant, self._long_lived_url, secrets)

    def _long_lived(self, short: TokenGrant, url: str, secrets: tuple[str, ...]) -> TokenGrant:
        """Instagram: the code's short-lived token exchanged for a long-lived one, which is
        what a refresh presents (so it goes in both slots, as a refresh's does). The code is
        spent by now: a failure here says so, as the user must authorize again. `secrets`:
        the code exchange's, still never to be shown."""
        label = self.profile.label
        token = short.access_token
        if token is None:
            raise UnusableGrant(
                f"{label}'s answer to the authorization code carries no access token",
                **_details(short),
            )
        secrets = (*secrets, token)
        request = long_lived_request(self.profile, self._credentials, token, url)
        try:
            grant = interpret_answer(self.call(request, secrets, LONG_LIVED), self.profile, secrets)
        except AppCredentialsRejected:
            raise
        except TikTokError as error:
            raise UnusableGrant(
                "the code was exchanged, but exchanging its short-lived token for a "
                f"long-lived one failed: {error.reason}",
                **_details(error),
            ) from None
        if grant.access_token is None:
            raise UnusableGrant(
                f"{label}'s long-lived exchange answered no access token", **_details(grant)
            )
        return replace(
            grant,
            refresh_token=grant.access_token,
            refresh_expires_at=grant.access_expires_at,
            open_id=short.open_id,
            scope=grant.scope or short.scope,
        )

    def revoke(self, token: str) -> None:
        """Revoke `token` (RFC 7009); returns only when the provider said so."""
        if self._revoke_url is None:
            raise ValueError(f"{self.profile.label} has no revoke endpoint")
        if not token:
            raise ValueError("a token is required")
        secrets = self._secrets(token)
        request = revoke_request(self.profile, self._credentials, token, self._revoke_url)
        answer = self.call(request, secrets, REVOKED)
        fields, _, secrets, details = read_answer(answer, secrets, token_fields(self.profile))
        if fields is not None:
            raise_error_field(
                fields, self.profile, answer, details, secrets, rejection_context=ALREADY_INVALID
            )
        raise_if_busy(answer.status, answer.headers, details, self.profile.label)
        if not 200 <= answer.status < 300:
            raise RefreshFailed(
                f"unexpected HTTP {answer.status} from {self.profile.label}", **details
            )

    def close(self) -> None:
        self._http.close()

    def _secrets(self, token: str) -> tuple[str, ...]:
        if self._credentials is None:
            return (token,)
        return (token, self._credentials.client_secret.reveal())

    def call(self, request: Request, secrets: tuple[str, ...], if_processed: str) -> Answer:
        """One bounded call: status, headers and the decoded, capped body; or RefreshFailed
        saying whether the provider may have done it (`if_processed`: what, if so). For a
        call the profile does not describe (TikTok's code exchange) as for its own."""
        sent_at = datetime.now(UTC)
        label = self.profile.label
        try:
            answer = self._http.call(request.method, request.url, request.body, request.headers)
        except AnswerUnreadable as problem:
            processed = problem.status == 200
            raise RefreshFailed(
                f"{label}'s {problem.reason}" + (f" ({if_processed})" if processed else ""),
                maybe_processed=processed,
                http_status=problem.status,
                log_id=log_id(None, problem.headers, secrets),
                elapsed=problem.elapsed,
            ) from None
        except CallFailed as failure:
            raise self._failure(failure, if_processed) from None
        return Answer(answer.status, answer.headers, answer.body, sent_at, answer.elapsed)

    def _failure(self, failure: CallFailed, if_processed: str) -> RefreshFailed:
        """A call without an answer; says whether the provider may have seen it."""
        label, seconds, elapsed = self.profile.label, f"{self._timeout:g}", failure.elapsed
        if not failure.sent:
            reason = (
                f"could not connect to {label} within {seconds} s"
                if failure.timed_out
                else f"could not connect to {label} ({failure.cause})"
            )
            return RefreshFailed(reason, elapsed=elapsed)
        if failure.timed_out:
            reason = f"no complete answer from {label} within {seconds} s ({if_processed})"
        elif failure.status is None:
            reason = f"connection to {label} failed after sending ({failure.cause})"
        else:
            reason = f"connection to {label} failed while reading the answer ({failure.cause})"
        return RefreshFailed(
            reason, maybe_processed=True, http_status=failure.status, elapsed=elapsed
        )


def _details(outcome: TokenGrant | TikTokError) -> dict[str, Any]:
    """What an outcome says of its call (status, log id, time), for the next one made of it."""
    return {
        "http_status": outcome.http_status,
        "log_id": outcome.log_id,
        "elapsed": outcome.elapsed,
    }
