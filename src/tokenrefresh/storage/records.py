"""Plain frozen records and statuses that the repository hands to services: never ORM
objects or rows. Everything above storage speaks in these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tokenrefresh.base import defaults

__all__ = [
    "AccountLine",
    "AccountStatus",
    "AccountView",
    "AttemptRecord",
    "AttemptView",
    "Candidate",
    "ClaimedAccount",
    "Due",
    "ImportCounts",
    "NewAccount",
    "NewTokens",
    "RunView",
    "Shard",
    "Stats",
    "TokenCiphertexts",
    "WriteResult",
]


class AccountStatus(StrEnum):
    ACTIVE = "active"  # refreshed by every run
    EXPIRED = "expired"  # TikTok rejected the refresh token or it is past its expiry: reconnect
    DISABLED = "disabled"  # excluded by hand
    REVOKED = "revoked"  # access revoked at TikTok, tokens erased: only a new connect helps


@dataclass(frozen=True)
class Shard:
    """`index` of `count`: the accounts whose id mod count is index."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Due:
    """Which accounts a refresh run takes: active, access token expiring before `horizon`,
    refresh token still valid at `now`, next attempt time come, not refreshed since `now`.
    """

    now: datetime
    horizon: datetime
    shard: Shard | None = None
    # The app whose accounts these are (None: every app, for callers that present each
    # account to its own app's endpoint), and, for a provider that refreshes only tokens of a
    # minimum age (Instagram: 24 h), the latest issue time a due token may have.
    app: str | None = None
    issued_before: datetime | None = None


@dataclass(frozen=True)
class AccountView:
    """An account as shown to people: everything but its tokens."""

    id: int
    app: str
    open_id: str  # the user's id at the app's provider (TikTok's open_id)
    label: str | None
    status: str
    scope: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    last_refreshed_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    has_tokens: bool
    # The app's provider profile, as the configuration says (storage does not know it:
    # None until a service fills it in; None also for an app no longer configured).
    provider: str | None = None


@dataclass(frozen=True)
class Candidate:
    """An account a refresh run will try, with what it needs to say why."""

    id: int
    open_id: str
    label: str | None
    status: str
    access_expires_at: datetime
    app: str


@dataclass(frozen=True)
class ClaimedAccount:
    """A claimed account, with its ciphertexts and the generation they belong to."""

    id: int
    open_id: str
    status: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    consecutive_failures: int
    token_generation: int
    access_token_ciphertext: str | None = field(repr=False)
    refresh_token_ciphertext: str | None = field(repr=False)
    app: str = defaults.APP


@dataclass(frozen=True)
class TokenState:
    """What an app's read of a token needs, in one indexed query: is the stored access token
    good for long enough, and if not, may the account be refreshed at all."""

    id: int
    open_id: str
    status: str
    scope: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    consecutive_failures: int
    next_attempt_at: datetime
    last_error: str | None
    access_token_ciphertext: str | None = field(repr=False)
    has_refresh_token: bool
    # When the stored pair was issued, and when a refresh last stored one: equal when the
    # stored pair came from that refresh (an import or connect sets only the first).
    tokens_issued_at: datetime | None = None
    last_refreshed_at: datetime | None = None
    app: str = defaults.APP


@dataclass(frozen=True)
class AccountLine:
    """What an import line says of an account besides its tokens.

    `line` names it in errors. `issued_at` is when its pair was issued; only a line that
    states it (`issued_at_stated`) is compared with the stored pair: the time of the import
    says nothing about which consent is newer.
    """

    line: int
    open_id: str
    label: str | None
    access_expires_at: datetime
    refresh_expires_at: datetime
    issued_at: datetime
    issued_at_stated: bool
    scope: str


@dataclass(frozen=True)
class NewAccount(AccountLine):
    """An account to import: its line, and its tokens encrypted. The fingerprint of the
    refresh token tells a spent token or the very same pair again."""

    access_token_ciphertext: str | None = field(repr=False)  # None: due at once (connect)
    refresh_token_ciphertext: str = field(repr=False)
    refresh_token_fingerprint: str


@dataclass(frozen=True)
class ImportCounts:
    created: int
    updated: int
    unchanged: int  # the same refresh token as stored: nothing to replace


@dataclass(frozen=True)
class NewTokens:
    """A refreshed token pair, encrypted. None keeps what is stored (TikTok left it out)."""

    access_token_ciphertext: str | None = field(repr=False)
    refresh_token_ciphertext: str | None = field(repr=False)
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    scope: str | None


@dataclass(frozen=True)
class TokenCiphertexts:
    """One account's ciphertexts, for key rotation."""

    id: int
    token_generation: int
    access_token_ciphertext: str | None = field(repr=False)
    refresh_token_ciphertext: str | None = field(repr=False)


@dataclass(frozen=True)
class AttemptRecord:
    """One call to TikTok, as it is kept in the attempt history."""

    attempted_at: datetime
    outcome: str
    duration_ms: int
    http_status: int | None = None
    error_code: str | None = None
    log_id: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class AttemptView:
    id: int
    account_id: int
    run_id: int | None
    attempted_at: datetime
    outcome: str
    http_status: int | None
    error_code: str | None
    log_id: str | None
    duration_ms: int
    message: str | None


@dataclass(frozen=True)
class RunView:
    id: int
    command: str
    host: str
    pid: int
    shard: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    exit_code: int | None
    counts: dict[str, int]
    message: str | None


@dataclass(frozen=True)
class Stats:
    """What `status` reports, computed in a handful of indexed queries."""

    by_status: dict[str, int]
    expiring_within_window: int
    overdue: int
    failing: int
    past_refresh_expiry: int
    without_tokens: int  # not expired, refresh token still in date, but none stored
    soonest_access_expiry: datetime | None
    soonest_refresh_expiry: datetime | None


class WriteResult(StrEnum):
    """What a conditional write found."""

    WRITTEN = "written"
    LOST_RACE = "lost_race"  # another process stored a newer token pair first
    GONE = "gone"  # the account was removed meanwhile
