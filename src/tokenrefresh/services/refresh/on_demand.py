"""An access token for an app, now: the stored one if it stays valid long enough, else the
account refreshed on the spot, under the same lease as a cron run's claim.

Exclusion, whoever asks at once (cron runs, shards, `--account-id` runs, threads and
processes calling this): only the holder of an account's lease presents its refresh token.
A caller that finds the lease taken waits for that refresh (bounded by `wait`) and returns
its result instead of refreshing again; threads of one process queue on a lock per account
first, so they do not poll the database for each other.

Two brakes keep callers in a loop from spending refresh tokens for nothing. A pair TikTok
issued that the database did not take suspends this store's refreshes until a probe write
succeeds (every refresh now would spend another token that cannot be stored). And an
account whose stored pair came from a refresh less than REFRESH_PACING ago is not refreshed
again on demand, whoever asks: if its token is still not good for `min_valid`, TikTok does
not give that much (MinValidUnreachable), and another rotation would not change that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base import defaults
from tokenrefresh.base.clock import Clock, iso, utcnow
from tokenrefresh.base.durations import MAX_DURATION, check_duration, format_duration
from tokenrefresh.base.outcomes import TokenEndpoint
from tokenrefresh.base.scopes import check_scopes, granted_scopes
from tokenrefresh.errors import (
    AccountNotFound,
    InvalidArgument,
    MinValidUnreachable,
    ReconnectNeeded,
    RefreshesSuspended,
    TemporarilyUnavailable,
)
from tokenrefresh.services.refresh.account import AccountRefresher, AppNames
from tokenrefresh.services.refresh.apps import AppEndpoints, OnlyDefault
from tokenrefresh.services.refresh.control import ON_DEMAND, RunControl
from tokenrefresh.services.refresh.pacing import Pacing, Throttle
from tokenrefresh.services.refresh.report import RECONNECT_HOW, REJECTED_WHY, AccountResult, Result
from tokenrefresh.storage.records import AccountStatus, TokenState
from tokenrefresh.storage.repository import GrantNotStored, Repository

__all__ = ["AccessToken", "OnDemand"]

log = logging.getLogger("tokenrefresh.on_demand")

DEFAULT_WAIT = timedelta(seconds=30)  # for another's refresh of the account, at most
# After a failed on-demand refresh, callers of this process get TemporarilyUnavailable for
# this long without a new call to TikTok: an app asking in a loop must not flood it.
RETRY_AFTER_FAILURE = 10.0  # seconds
# An account whose stored pair a refresh stored less than this long ago is not refreshed
# again on demand, by any process: a loop of callers rotates it at most once per interval.
REFRESH_PACING = timedelta(seconds=60)
# While refreshes are suspended (a pair could not be stored), a refused call checks at most
# this often whether the database takes writes again.
PROBE_INTERVAL = 2.0  # seconds
_POLL_FIRST, _POLL_MAX = 0.02, 0.25  # seconds between looks at a lease held elsewhere


@dataclass(frozen=True)
class AccessToken:
    """An access token and what it is for. Neither repr() nor str() shows the token."""

    token: str = field(repr=False)
    expires_at: datetime
    account_id: int
    open_id: str
    scope: str

    def __str__(self) -> str:
        return (
            f"access token of account {self.account_id} ({self.open_id}), valid until "
            f"{iso(self.expires_at)}"
        )


class OnDemand:
    """Hands out fresh access tokens; thread-safe, one per process is enough."""

    def __init__(
        self,
        repository: Repository,
        cipher: TokenCipher,
        client: TokenEndpoint | AppEndpoints,
        *,
        clock: Clock = utcnow,
        wait: timedelta = DEFAULT_WAIT,
    ) -> None:
        self._repository = repository
        self._cipher = cipher
        # Each account is presented to its own app's endpoint only: a bare client serves
        # the default app (`tiktok`) alone; an AppEndpoints serves every configured app.
        self._endpoints = client if isinstance(client, AppEndpoints) else OnlyDefault(client)
        self._clock = clock
        self._wait = wait.total_seconds()
        # A 429 slows every on-demand call of this process to the same app's provider.
        self._throttles: dict[str, Throttle] = {}
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._failed_at: dict[int, tuple[float, str]] = {}
        self._suspension = _Suspension(repository)

    def access_token(
        self,
        *,
        account_id: int | None = None,
        open_id: str | None = None,
        min_valid: timedelta,
        scopes: Iterable[str] = (),
        app: str = defaults.APP,
    ) -> AccessToken:
        """The account's access token, valid for at least `min_valid` from now, of a
        consent that granted every one of `scopes` (checked before anything else is done).

        Raises AccountNotFound, ReconnectNeeded (its user must connect again, also to grant
        a missing scope),
        MinValidUnreachable (TikTok's tokens do not last that long), RefreshesSuspended (a
        pair could not be stored, and the database still refuses writes),
        TemporarilyUnavailable (TikTok or the database failed, or another refresh of the
        account did not end within the wait), or InvalidArgument; never a token that is not
        valid long enough.
        """
        _check_min_valid(min_valid)
        try:
            wanted = frozenset(check_scopes(scopes))
        except ValueError as error:
            raise InvalidArgument(f"scopes: {error}") from None
        state = self._state(account_id, open_id, app)
        token = self._fresh(state, min_valid, wanted)
        if token is not None:
            return token
        with self._lock_for(state.id):
            return self._refreshed(state.id, min_valid, wanted)

    def _state(
        self, account_id: int | None, open_id: str | None, app: str = defaults.APP
    ) -> TokenState:
        """By id, or by user id (`open_id`) within `app`."""
        if (account_id is None) == (open_id is None):
            raise TypeError("give exactly one of account_id and open_id")
        state = self._repository.token_state(account_id, open_id, app)
        if state is None:
            raise AccountNotFound.by_key(account_id, open_id)
        return state

    def _fresh(
        self, state: TokenState, min_valid: timedelta, wanted: frozenset[str]
    ) -> AccessToken | None:
        """The stored token if it is good for `min_valid`; ReconnectNeeded if the account
        can never be refreshed, or its consent lacks a scope in `wanted`; None if a refresh
        is needed."""
        now = self._clock()
        problem = _usable_problem(state, now)
        if problem is not None:
            reason, usable = problem
            raise ReconnectNeeded(
                f"account {state.id} ({state.open_id}) {usable}",
                reason=reason,
                account_id=state.id,
                open_id=state.open_id,
            )
        _check_scopes(state, wanted)
        if state.access_token_ciphertext is None or state.access_expires_at < now + min_valid:
            return None
        return AccessToken(
            token=self._cipher.decrypt(state.access_token_ciphertext),
            expires_at=state.access_expires_at,
            account_id=state.id,
            open_id=state.open_id,
            scope=state.scope,
        )

    def _refreshed(
        self, account_id: int, min_valid: timedelta, wanted: frozenset[str]
    ) -> AccessToken:
        """Take the lease and refresh, or wait for whoever holds it; then read again."""
        give_up = time.monotonic() + self._wait
        pause = _POLL_FIRST
        endpoint: tuple[TokenEndpoint, AppNames] | None = None
        while True:
            state = self._state(account_id, None)
            if endpoint is None:
                # An app not configured, or its credentials missing: a ConfigError before
                # anything is claimed, never an account failure.
                endpoint = self._endpoints(state.app)
            token = self._fresh(state, min_valid, wanted)  # another caller may have refreshed it
            if token is not None:
                return token
            _check_pacing(state, min_valid, self._clock())
            _check_min_age(state, min_valid, endpoint[1], self._clock())
            self._suspension.check()
            self._check_recent_failure(state)
            with self._repository.claim(account_id, None) as claim:
                if claim is not None:
                    # Read under the lease: the generation the refresh compares against.
                    state = self._state(account_id, None)
                    token = self._fresh(state, min_valid, wanted)
                    if token is not None:
                        return token
                    _check_pacing(state, min_valid, self._clock())
                    _check_min_age(state, min_valid, endpoint[1], self._clock())
                    self._suspension.check()
                    try:
                        refresher = self._refresher(give_up, state.app, *endpoint)
                        result = refresher.refresh(claim)
                    except GrantNotStored as error:
                        self._suspension.start(account_id, error.detail)
                        raise
                    if result is not None and result.result == Result.LOST:
                        self._suspension.start(account_id, result.detail or "lost")
                    if result is None or result.result != Result.SKIPPED:
                        return self._after(account_id, result, min_valid, wanted)
                    # A newer pair was stored meanwhile (an import): read that one.
                    continue
            if time.monotonic() + pause >= give_up:
                raise TemporarilyUnavailable(
                    f"account {account_id} is being refreshed by another process, which did "
                    f"not finish within {self._wait:.0f}s; try again",
                    reason="busy",
                    account_id=account_id,
                    open_id=state.open_id,
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def _refresher(
        self, give_up: float, app: str, client: TokenEndpoint, names: AppNames
    ) -> AccountRefresher:
        control = RunControl(ON_DEMAND)
        control.deadline = give_up  # retries stop when the caller's wait is up
        with self._guard:
            throttle = self._throttles.setdefault(app, Throttle(4))
        pacing = Pacing(throttle=throttle, control=control)
        return AccountRefresher(client, self._cipher, clock=self._clock, pacing=pacing, names=names)

    def _after(
        self,
        account_id: int,
        result: AccountResult | None,
        min_valid: timedelta,
        wanted: frozenset[str],
    ) -> AccessToken:
        """The refreshed token, or why there is none."""
        if result is not None and result.result == Result.REFRESHED:
            self._failed_at.pop(account_id, None)
            state = self._state(account_id, None)
            token = self._fresh(state, min_valid, wanted)
            if token is not None:
                return token
            raise _unreachable(state, min_valid)
        if result is not None and result.result == Result.EXPIRED:
            why = result.detail or "TikTok rejected its refresh token"
            raise ReconnectNeeded(
                f"account {account_id} ({result.open_id}): {why}; its user {REJECTED_WHY}; "
                f"its user must reconnect {RECONNECT_HOW})",
                reason="expired",
                account_id=account_id,
                open_id=result.open_id,
            )
        detail = result.detail if result is not None else "the refresh was stopped"
        message = f"account {account_id} could not be refreshed now: {detail}"
        self._failed_at[account_id] = (time.monotonic(), message)
        open_id = result.open_id if result is not None else None
        raise TemporarilyUnavailable(
            message, reason="refresh_failed", account_id=account_id, open_id=open_id
        )

    def _check_recent_failure(self, state: TokenState) -> None:
        failed = self._failed_at.get(state.id)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_FAILURE:
            raise TemporarilyUnavailable(
                f"{failed[1]} (not tried again yet)",
                reason="refresh_failed",
                account_id=state.id,
                open_id=state.open_id,
            )

    def _lock_for(self, account_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(account_id, threading.Lock())


class _Suspension:
    """Refreshes refused, without calling TikTok, after a pair TikTok issued could not be
    stored: until a probe write succeeds (tried by a refused call, at most every
    PROBE_INTERVAL seconds)."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository
        self._lock = threading.Lock()
        self._since: tuple[int, str] | None = None  # the account that failed, and why
        self._probed_at = 0.0

    def start(self, account_id: int, why: str) -> None:
        with self._lock:
            self._since = (account_id, why)
            self._probed_at = time.monotonic()
        log.error(
            "account %s: the new token pair TikTok issued could not be stored (%s); "
            "refreshes are suspended until the database takes writes again",
            account_id,
            why,
        )

    def check(self) -> None:
        """Return if refreshes may go on; else RefreshesSuspended."""
        with self._lock:
            if self._since is None:
                return
            account_id, why = self._since
            probe = time.monotonic() - self._probed_at >= PROBE_INTERVAL
            if probe:
                self._probed_at = time.monotonic()  # one prober per interval
        if probe and self._repository.takes_token_writes(account_id):
            with self._lock:
                if self._since == (account_id, why):
                    self._since = None
            log.warning("the database takes writes again: refreshes resume")
            return
        raise RefreshesSuspended(
            f"refreshes are suspended: the new token pair TikTok issued for account "
            f"{account_id} could not be stored ({why}); no refresh token is spent until the "
            f"database takes writes again (checked at most every {PROBE_INTERVAL:.0f}s). "
            "Tokens that are still valid are handed out meanwhile"
        )


def _check_min_valid(min_valid: timedelta) -> None:
    if min_valid < timedelta(0):
        raise InvalidArgument("min_valid must not be negative")
    try:
        check_duration(min_valid)
    except ValueError:
        raise InvalidArgument(
            f"min_valid must be at most {format_duration(MAX_DURATION)} (10 years)"
        ) from None


def _check_pacing(state: TokenState, min_valid: timedelta, now: datetime) -> None:
    """MinValidUnreachable if the stored pair came from a refresh less than REFRESH_PACING
    ago (by anyone): its token not being good for `min_valid` is what TikTok gives."""
    refreshed_at = state.last_refreshed_at
    if refreshed_at is None or state.tokens_issued_at != refreshed_at:
        return  # never refreshed, or imported or connected since
    if abs(now - refreshed_at) < REFRESH_PACING:
        raise _unreachable(state, min_valid)


def _check_min_age(state: TokenState, min_valid: timedelta, names: AppNames, now: datetime) -> None:
    """MinValidUnreachable if the provider refreshes a token only once it is `min_age` old
    (Instagram, Threads) and this one is younger: presenting it would only be refused."""
    issued = state.tokens_issued_at
    if names.min_age <= timedelta(0) or issued is None or now - issued >= names.min_age:
        return
    raise MinValidUnreachable(
        f"account {state.id} ({state.open_id}): its token was issued at {iso(issued)} and is "
        f"valid until {iso(state.access_expires_at)}; {names.provider} refreshes a token only "
        f"once it is {format_duration(names.min_age)} old, so it cannot be made valid for "
        f"{format_duration(min_valid)} yet; ask with a smaller min_valid",
        account_id=state.id,
        open_id=state.open_id,
    )


def _unreachable(state: TokenState, min_valid: timedelta) -> MinValidUnreachable:
    """The error naming what TikTok gives, for a pair a refresh stored just now."""
    issued = state.last_refreshed_at or state.tokens_issued_at
    lifetime = (state.access_expires_at - issued).total_seconds() if issued else 0.0
    if lifetime < 1:
        gives = "TikTok's newest access token came without a usable lifetime"
    else:
        # 7199.8s is TikTok's 2h, less the call's time; but never rounded up to what was
        # asked for (a token 1s short of it is shown to the second).
        seconds = round(lifetime / 60) * 60 if lifetime >= 120 else int(lifetime)
        if seconds >= min_valid.total_seconds():
            seconds = int(lifetime)
        shown = format_duration(timedelta(seconds=seconds))
        gives = f"TikTok's access tokens last {shown}"
    return MinValidUnreachable(
        f"account {state.id} ({state.open_id}) was refreshed at {iso(issued) if issued else '?'} "
        f"and its token is valid until {iso(state.access_expires_at)}: {gives}; asked for "
        f"{format_duration(min_valid)}. It is not refreshed again within "
        f"{format_duration(REFRESH_PACING)} of a refresh; ask with a smaller min_valid",
        account_id=state.id,
        open_id=state.open_id,
    )


def _check_scopes(state: TokenState, wanted: frozenset[str]) -> None:
    """ReconnectNeeded (`missing_scope`) if the account's consent lacks one of `wanted`."""
    missing = wanted - granted_scopes(state.scope)
    if not missing:
        return
    names = ", ".join(sorted(missing))
    what = "the scope" if len(missing) == 1 else "the scopes"
    stored = f"its consent grants {state.scope[:200]!r}" if state.scope else "no scope is stored"
    raise ReconnectNeeded(
        f"account {state.id} ({state.open_id}) lacks {what} {names} ({stored}): its user must "
        f"connect it again, granting {names}",
        reason="missing_scope",
        account_id=state.id,
        open_id=state.open_id,
        missing_scopes=missing,
    )


def _usable_problem(state: TokenState, now: datetime) -> tuple[str, str] | None:
    """Why the account can never give a token without its user (a ReconnectNeeded reason
    and the words), or None."""
    if state.status == AccountStatus.EXPIRED:
        return "expired", (
            f"is expired: TikTok rejected its refresh token (its user {REJECTED_WHY}); its "
            f"user must reconnect {RECONNECT_HOW})"
        )
    if state.status == AccountStatus.REVOKED:
        return "revoked", "was revoked: its user must connect the TikTok account again"
    if state.status == AccountStatus.DISABLED:
        return "disabled", "is disabled (`tokenrefresh accounts enable` makes it active again)"
    if not state.has_refresh_token:
        return "no_refresh_token", "has no stored refresh token: its user must reconnect"
    if state.refresh_expires_at <= now:
        return "refresh_token_expired", (
            "has a refresh token past its expiry: its user must reconnect"
        )
    return None
