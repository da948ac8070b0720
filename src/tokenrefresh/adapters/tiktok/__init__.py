"""TikTok's OAuth endpoints, behind three methods: `TikTokClient.refresh(refresh_token)`,
`TikTokClient.exchange_code(code, redirect_uri=...)` and `TikTokClient.revoke(access_token)`.

Every answer becomes a TokenGrant (None for a revoke) or one of three exceptions: the user's
token or code was rejected (UserTokenRejected), the app's credentials were rejected
(AppCredentialsRejected), or the call failed without a verdict (RefreshFailed: transient,
with any Retry-After). Nothing above this package sees requests, status codes or JSON.

- `client.py`: the HTTP call (one bounded `_post` for all three, through `outbound`);
- `answer.py`: the pure interpretation of a token answer (a refresh);
- `code_answer.py`, `revoke_answer.py`: the same for a code exchange and a revoke;
- `reading.py`: what all three read first (`Answer`: the body as JSON, its tokens, log_id,
  Retry-After);
- `consent.py`: the consent URL, state and PKCE values (no HTTP).
"""

from __future__ import annotations

from tokenrefresh.adapters.oauth.reading import Answer
from tokenrefresh.adapters.tiktok.answer import (
    MAX_ACCESS_LIFETIME,
    MAX_REFRESH_LIFETIME,
    MAX_RETRY_AFTER,
    interpret_answer,
)
from tokenrefresh.adapters.tiktok.client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT,
    TikTokClient,
)
from tokenrefresh.adapters.tiktok.code_answer import interpret_code_answer
from tokenrefresh.adapters.tiktok.consent import (
    AUTHORIZE_URL,
    ChallengeEncoding,
    authorize_url,
    check_redirect_uri,
    code_challenge,
    new_code_verifier,
    new_state,
)
from tokenrefresh.adapters.tiktok.revoke_answer import interpret_revoke_answer

__all__ = [
    "AUTHORIZE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_ACCESS_LIFETIME",
    "MAX_REFRESH_LIFETIME",
    "MAX_RETRY_AFTER",
    "Answer",
    "ChallengeEncoding",
    "TikTokClient",
    "authorize_url",
    "check_redirect_uri",
    "code_challenge",
    "interpret_answer",
    "interpret_code_answer",
    "interpret_revoke_answer",
    "new_code_verifier",
    "new_state",
]
