"""What a refresh at TikTok can come to: a TokenGrant, or one of three exceptions.

Plain types with no HTTP in them, so that the refresher (and a fake of the endpoint in
unit tests) can use them without importing requests. `tiktok.py` produces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "AppCredentialsRejected",
    "ConsentEndpoint",
    "RefreshFailed",
    "TikTokError",
    "TokenEndpoint",
    "TokenGrant",
    "UnusableGrant",
    "UserTokenRejected",
]


@dataclass(frozen=True)
class TokenGrant:
    """A successful refresh. Absolute expiries count from when the request was sent.

    `access_token` / `refresh_token` None: TikTok sent none, keep the stored one.
    `refresh_expires_at` None: no usable lifetime came, keep the stored expiry.
    `notes`: short, secret-free texts on what was odd about an answer that was still accepted
    (a missing or clamped lifetime, a token pair beside an error status, ...).
    """

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    open_id: str | None
    scope: str | None
    http_status: int
    log_id: str | None
    elapsed: float
    notes: tuple[str, ...] = ()


class TikTokError(Exception):
    """A refresh that did not produce a grant; never carries a token."""

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        error_code: str | None = None,
        log_id: str | None = None,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.error_code = error_code
        self.log_id = log_id
        self.elapsed = elapsed


class UserTokenRejected(TikTokError):
    """TikTok rejected this user's refresh token (invalid, expired, revoked)."""


class AppCredentialsRejected(TikTokError):
    """TikTok rejected the app's client key or secret: no account can be refreshed."""


class RefreshFailed(TikTokError):
    """No verdict on the token: TikTok or the network failed, or the answer made no sense.

    `retryable`: trying again soon may help. `retry_after`: seconds TikTok asked to wait.
    `maybe_processed`: the request may have reached TikTok and rotated the token although
    no complete answer arrived (the call's deadline passed, the connection was lost after
    sending, or a 200 answer could not be read).
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        maybe_processed: bool = False,
        **details: Any,
    ) -> None:
        super().__init__(reason, **details)
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_processed = maybe_processed


class UnusableGrant(RefreshFailed):
    """TikTok answered an authorization code with tokens that cannot be stored (no refresh
    token, or no usable open_id): the code is spent and the tokens are discarded, so the
    user must authorize again. Never retryable."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason, retryable=False, maybe_processed=True, **details)


class TokenEndpoint(Protocol):
    """What the refresher needs of TikTok; a fake of it serves unit tests."""

    def refresh(self, refresh_token: str) -> TokenGrant: ...

    def close(self) -> None: ...


class ConsentEndpoint(Protocol):
    """What connecting and disconnecting an account needs of TikTok; a fake of it serves
    unit tests. `exchange_code` gives a grant with a refresh token and an open_id or raises one
    of the three outcome exceptions (UserTokenRejected: the code was not accepted);
    `revoke` returns only if TikTok revoked the token (UserTokenRejected: it was already
    invalid)."""

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant: ...

    def revoke(self, access_token: str) -> None: ...

    def close(self) -> None: ...
