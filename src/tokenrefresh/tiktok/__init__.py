"""The TikTok token endpoint, behind one method: `TikTokClient.refresh(refresh_token)`.

Every answer becomes a TokenGrant or one of three exceptions: the user's token was
rejected (UserTokenRejected), the app's credentials were rejected (AppCredentialsRejected),
or the refresh failed without a verdict on the token (RefreshFailed: transient, with any
Retry-After). Nothing above this package sees requests, status codes or JSON.

- `client.py`: the HTTP call, its body cap and its deadline;
- `deadline.py`: the watchdog that ends a call at its deadline, however the bytes arrive;
- `answer.py`: the pure interpretation of an answer.
"""

from __future__ import annotations

from tokenrefresh.tiktok.answer import (
    MAX_ACCESS_LIFETIME,
    MAX_REFRESH_LIFETIME,
    MAX_RETRY_AFTER,
    interpret_answer,
)
from tokenrefresh.tiktok.client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT,
    TikTokClient,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_ACCESS_LIFETIME",
    "MAX_REFRESH_LIFETIME",
    "MAX_RETRY_AFTER",
    "TikTokClient",
    "interpret_answer",
]
