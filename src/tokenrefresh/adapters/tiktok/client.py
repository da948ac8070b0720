"""TikTokClient: the `tiktok` profile's ProviderClient (`adapters/oauth/client.py`), with what
only TikTok's Login Kit has here: the code exchange, and the reading of its revoke answers.
Every call goes through the ProviderClient's one bounded call (a cap on the body, a total
deadline, no redirects), so that no endpoint can hold a worker (and with it SIGTERM and
--max-runtime) longer than `timeout`. What the bytes mean: `answer.py`, `code_answer.py`,
`revoke_answer.py`."""

from __future__ import annotations

from tokenrefresh.adapters.oauth.client import ProviderClient
from tokenrefresh.adapters.oauth.request import revoke_request, with_base_url
from tokenrefresh.adapters.outbound.call import DEFAULT_CONNECT_TIMEOUT
from tokenrefresh.adapters.tiktok.answer import tiktok_profile
from tokenrefresh.adapters.tiktok.revoke_answer import REVOKED, interpret_revoke_answer
from tokenrefresh.base.outcomes import TokenGrant
from tokenrefresh.base.settings import ClientCredentials

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT", "TikTokClient"]

TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a URL path
REVOKE_PATH = "/v2/oauth/revoke/"
DEFAULT_TIMEOUT = 20.0  # seconds for a whole call, connect to last byte (--http-timeout)
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # TikTok's answers are under 2 KiB


class TikTokClient:
    """Refreshes, exchanges and revokes tokens at TikTok's OAuth endpoints.

    Every call is one form POST (one session per worker thread): `timeout` bounds the whole
    call, connect to last byte; `max_body_bytes` the answer; no redirect is followed,
    nothing retried. `base_url` replaces the profile's scheme, host and port (a path in it
    goes first): TIKTOK_API_BASE_URL.
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
        profile = tiktok_profile()
        assert profile.urls.token is not None
        assert profile.urls.revoke is not None
        self._profile = profile
        self._credentials = credentials
        self._url = with_base_url(profile.urls.token, base_url)
        self._revoke_url = with_base_url(profile.urls.revoke, base_url)
        self._provider = ProviderClient(
            profile,
            credentials=credentials,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_body_bytes=max_body_bytes,
        )

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Present the refresh token once; a grant, or one of the three outcome exceptions."""
        return self._provider.refresh(refresh_token)

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        """Exchange an authorization code (single use) for a new account's token pair.

        `redirect_uri` must be exactly the one of the authorize request; `code_verifier` is
        sent only when given (PKCE, desktop apps). A grant always has a refresh token and an
        open_id; else one of the three outcome exceptions (see `code_answer.py`)."""
        return self._provider.exchange_code(
            code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )

    def revoke(self, access_token: str) -> None:
        """Revoke the user's access token (and with it the app's access to the account).

        Returns only when TikTok said so; see `revoke_answer.py` for the rest."""
        if not access_token:
            raise ValueError("an access token is required")
        secrets = (access_token, self._credentials.client_secret.reveal())
        request = revoke_request(self._profile, self._credentials, access_token, self._revoke_url)
        interpret_revoke_answer(self._provider.call(request, secrets, REVOKED), secrets)

    def close(self) -> None:
        self._provider.close()
