"""Refreshing one claimed account: decrypt, call TikTok (retries, throttle, breaker),
classify the answer, store and record it. Shared by the cron run and on-demand callers.

A rotated refresh token is worth more than anything else: a grant is stored and committed
before anything else happens with it, and a grant that cannot be stored is LOST, loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base.clock import Clock, iso, utcnow
from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenEndpoint,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.errors import ClientRejected, DatabaseError, DecryptionError
from tokenrefresh.services.refresh.pacing import FailureBackoff, Pacing, RetryPolicy
from tokenrefresh.services.refresh.report import AccountResult, Result, StopReason
from tokenrefresh.storage.records import AccountStatus, AttemptRecord, NewTokens, WriteResult
from tokenrefresh.storage.repository import Claim, GrantNotStored

__all__ = ["TIKTOK_APP", "AccountRefresher", "AppNames", "describe_exception"]

log = logging.getLogger("tokenrefresh.refresh")


@dataclass(frozen=True)
class AppNames:
    """What messages call an app's provider, and the app's credentials; `grace`: how long
    the provider accepts a rotated refresh token again after a lost answer (Xero's 30
    minutes; 0 for every other provider); `min_age`: how old a token must be before the
    provider refreshes it (Instagram's and Threads' 24 hours)."""

    provider: str
    credentials: str
    grace: timedelta = timedelta(0)
    min_age: timedelta = timedelta(0)


# After a lost answer, a provider with a grace period gets this many more attempts in the
# run than the retry policy's (each still inside the grace): presenting the old token again
# is then the way to the pair whose answer was lost.
GRACE_RETRIES = 3


TIKTOK_APP = AppNames("TikTok", "TIKTOK_CLIENT_KEY / TIKTOK_CLIENT_SECRET")


class AccountRefresher:
    """Refreshes claimed accounts, one at a time per call; handed its collaborators."""

    def __init__(
        self,
        client: TokenEndpoint,
        cipher: TokenCipher,
        *,
        clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
        backoff: FailureBackoff | None = None,
        pacing: Pacing | None = None,
        names: AppNames = TIKTOK_APP,
    ) -> None:
        self._client = client
        self._names = names
        self._cipher = cipher
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._backoff = backoff or FailureBackoff()
        self._pacing = pacing or Pacing()

    def refresh(self, claim: Claim) -> AccountResult | None:
        """Refresh the claimed account; None if the run stopped before its first call.

        Whatever goes wrong with this account becomes its result (FAILED, or LOST for a
        grant that could not be stored); only run-level causes (the database gone, the
        app's credentials rejected) are raised, to stop the run.
        """
        try:
            return self._refresh_claimed(claim)
        except (DatabaseError, ClientRejected):
            raise
        except Exception as error:
            log.debug("account %s: unexpected error", claim.account.id, exc_info=error)
            reason = f"could not be refreshed: {describe_exception(error)}"
            if not claim.closed:
                self._record_failure_quietly(claim, reason)
            return AccountResult(claim.account.id, claim.account.open_id, Result.FAILED, reason)

    def _record_failure_quietly(self, claim: Claim, reason: str) -> None:
        """Count the failure and back the account off, if the database lets us."""
        delay = self._backoff.after(claim.account.consecutive_failures + 1)
        try:
            claim.record_failure(reason, self._clock() + delay, [])
        except Exception as error:
            log.debug("account %s: could not record the failure", claim.account.id, exc_info=error)
            claim.release()

    def _refresh_claimed(self, claim: Claim) -> AccountResult | None:
        account = claim.account
        if account.refresh_token_ciphertext is None:
            claim.release()
            return AccountResult(
                account.id,
                account.open_id,
                Result.FAILED,
                "no refresh token is stored (erased after it expired): the user must reconnect",
            )
        try:
            refresh_token = self._cipher.decrypt(account.refresh_token_ciphertext)
        except DecryptionError:
            reason = (
                "its stored tokens cannot be decrypted with any key in "
                "TOKENREFRESH_ENCRYPTION_KEYS (was a key removed before `tokenrefresh keys "
                "rotate` re-encrypted everything?)"
            )
            self._record_failure_quietly(claim, reason)
            return AccountResult(account.id, account.open_id, Result.FAILED, reason)
        calls = _Calls()
        answer = self._call(refresh_token, calls)
        del refresh_token
        if answer is None:  # the run stopped before this account's first call
            claim.release()
            return None
        if isinstance(answer, TokenGrant):
            return self._store_guarded(claim, answer, calls)
        if isinstance(answer, UserTokenRejected):
            return self._rejected(claim, answer, calls)
        return self._failed(claim, answer, calls)

    def _call(
        self, refresh_token: str, calls: _Calls
    ) -> TokenGrant | UserTokenRejected | RefreshFailed | None:
        """TikTok, with retries; None if the run stopped before the first call."""
        policy = self._retry
        last_failure: RefreshFailed | None = None
        while self._pacing.throttle.acquire(lambda: self._pacing.control.stopping):
            answer = self._call_once(refresh_token, calls)
            if not isinstance(answer, RefreshFailed):
                return answer
            last_failure = answer
            if not self._retry_now(answer, len(calls.records), policy, calls):
                return answer
            delay = policy.delay(len(calls.records), answer.retry_after)
            if self._pacing.control.past_deadline(extra=delay) or self._pacing.control.sleep(delay):
                return answer
        return last_failure

    def _call_once(
        self, refresh_token: str, calls: _Calls
    ) -> TokenGrant | UserTokenRejected | RefreshFailed:
        """One call, admitted by the throttle; its outcome counted by the breaker."""
        started_at = self._clock()
        throttled, retry_after = False, None
        try:
            grant = self._client.refresh(refresh_token)
        except UserTokenRejected as rejected:
            self._pacing.breaker.record(failed=False)
            calls.add(started_at, Result.EXPIRED, rejected)
            return rejected
        except AppCredentialsRejected as rejected:
            calls.add(started_at, Result.FAILED, rejected)
            names = self._names
            raise ClientRejected(
                f"{names.provider} rejected the app's credentials ({names.credentials}), "
                f"{self._pacing.control.wording.rejected}. "
                f"{names.provider} said: {rejected.reason}"
            ) from None
        except RefreshFailed as failed:
            throttled = failed.http_status == 429 or failed.retry_after is not None
            retry_after = failed.retry_after
            calls.add(started_at, Result.FAILED, failed)
            if failed.retryable and self._pacing.breaker.record(
                failed=True, description=failed.reason
            ):
                self._pacing.control.stop(
                    StopReason.CIRCUIT_BREAKER,
                    f"{self._names.provider} is failing: {self._pacing.breaker.reason}; "
                    f"{self._pacing.control.wording.left}",
                )
            return failed
        finally:
            self._pacing.throttle.release(throttled=throttled, retry_after=retry_after)
        self._pacing.breaker.record(failed=False)
        calls.add(started_at, Result.REFRESHED, grant)
        return grant

    def _retry_now(
        self, failed: RefreshFailed, failures: int, policy: RetryPolicy, calls: _Calls
    ) -> bool:
        attempts = policy.attempts
        if calls.answer_lost and self._grace_left(calls) is not None:
            attempts += GRACE_RETRIES
        if not failed.retryable or failures >= attempts or self._pacing.control.stopping:
            return False
        if failed.retry_after is not None and failed.retry_after > policy.max_wait:
            self._pacing.control.stop(
                StopReason.RATE_LIMITED,
                f"{self._names.provider} asked to wait {failed.retry_after:.0f}s (Retry-After); "
                f"{self._pacing.control.wording.left}",
            )
            return False
        return True

    def _grace_left(self, calls: _Calls) -> timedelta | None:
        """How long the provider still takes the token presented when an answer was first
        lost (its grace period, Xero's); None without a grace, a lost answer, or time left."""
        grace = self._names.grace
        if grace <= timedelta(0) or calls.lost_at is None:
            return None
        left = calls.lost_at + grace - self._clock()
        return left if left > timedelta(0) else None

    def _store_guarded(self, claim: Claim, grant: TokenGrant, calls: _Calls) -> AccountResult:
        """_store; a grant that could not be stored for any reason is LOST, and loud."""
        account = claim.account
        try:
            return self._store(claim, grant, calls)
        except GrantNotStored:
            raise
        except Exception as error:
            log.debug("account %s: storing the grant failed", account.id, exc_info=error)
            detail = (
                f"{self._names.provider} issued a new token pair but it could not be stored "
                f"({describe_exception(error)}); its user may have to reconnect"
            )
            log.error("account %s (%s): %s", account.id, account.open_id, detail)
            claim.release()
            return AccountResult(account.id, account.open_id, Result.LOST, detail)

    def _store(self, claim: Claim, grant: TokenGrant, calls: _Calls) -> AccountResult:
        account = claim.account
        cipher = self._cipher
        tokens = NewTokens(
            access_token_ciphertext=(
                cipher.encrypt(grant.access_token) if grant.access_token else None
            ),
            refresh_token_ciphertext=(
                cipher.encrypt(grant.refresh_token) if grant.refresh_token else None
            ),
            access_expires_at=grant.access_expires_at,
            refresh_expires_at=grant.refresh_expires_at,
            scope=grant.scope,
        )
        status, detail = AccountStatus.ACTIVE, None
        if grant.open_id is not None and grant.open_id != account.open_id:
            status = AccountStatus.DISABLED
            other = safe_text(grant.open_id, 80)
            detail = (
                f"{self._names.provider} says this refresh token belongs to open_id {other!r}: "
                "the new tokens "
                "are stored, but the account is disabled until someone checks it"
            )
        elif account.status == AccountStatus.DISABLED:
            status = AccountStatus.DISABLED  # a refresh by id does not undo `accounts disable`
        written = claim.save_grant(tokens, calls.records, status=status, error=detail)
        if written == WriteResult.LOST_RACE:
            log.warning(
                "account %s (%s): %s issued a new token pair, but the account was "
                "re-imported meanwhile; the newer consent wins and this pair is not stored",
                account.id,
                self._names.provider,
                account.open_id,
            )
            return AccountResult(
                account.id,
                account.open_id,
                Result.SKIPPED,
                "re-imported meanwhile: the newer consent was kept",
            )
        if detail is not None:
            log.error("account %s (%s): %s", account.id, account.open_id, detail)
            return AccountResult(account.id, account.open_id, Result.FAILED, detail)
        log.info(
            "account %s (%s): refreshed; access token valid until %s",
            account.id,
            account.open_id,
            iso(grant.access_expires_at),
        )
        return AccountResult(
            account.id,
            account.open_id,
            Result.REFRESHED,
            access_expires_at=grant.access_expires_at,
        )

    def _rejected(self, claim: Claim, rejected: UserTokenRejected, calls: _Calls) -> AccountResult:
        account = claim.account
        reason = f"{self._names.provider} rejected the refresh token: {rejected.reason}"
        if calls.answer_lost and self._names.grace > timedelta(0):
            reason += (
                f"; an earlier attempt in this run got no answer, and {self._names.provider} "
                "refused the token presented again"
                + (" within its grace period" if self._grace_left(calls) else "")
            )
        elif calls.answer_lost:
            reason += (
                f"; an earlier attempt in this run got no answer, so {self._names.provider} "
                "probably rotated the token then and the response carrying the new one was lost"
            )
        written = claim.mark_expired(reason, calls.records)
        if written == WriteResult.LOST_RACE:
            log.info(
                "account %s (%s): rejected token, but another process stored a newer one first; "
                "not marked",
                account.id,
                account.open_id,
            )
            return AccountResult(
                account.id, account.open_id, Result.SKIPPED, "refreshed by another run meanwhile"
            )
        # INFO: the run's summary names every problem once; -v shows them as they happen.
        log.info("account %s (%s): expired: %s", account.id, account.open_id, reason)
        return AccountResult(account.id, account.open_id, Result.EXPIRED, reason)

    def _failed(self, claim: Claim, failed: RefreshFailed, calls: _Calls) -> AccountResult:
        account = claim.account
        backoff = self._backoff
        delay = backoff.after(account.consecutive_failures + 1)
        if failed.retry_after is not None:
            # Never parked longer than the back-off's cap, whatever date TikTok names.
            asked = timedelta(seconds=min(failed.retry_after, backoff.cap.total_seconds()))
            delay = max(delay, asked)
        next_attempt_at = self._clock() + delay
        reason = f"refresh failed: {failed.reason}"
        left = self._grace_left(calls)
        if calls.answer_lost and left is not None:
            # Inside the grace the old token still brings the pair whose answer was lost:
            # the next attempt comes while it does (an on-demand call, or a run that soon).
            next_attempt_at = min(next_attempt_at, self._clock() + left / 2)
            reason += (
                f"; {self._names.provider} takes the same refresh token again for "
                f"{format_duration(self._names.grace)} after a lost answer: the next attempt, "
                f"after {iso(next_attempt_at)}, presents it"
            )
        elif failed.maybe_processed:
            if "may have been rotated" not in failed.reason:  # say it once
                reason += (
                    f"; {self._names.provider} may have rotated the token without the answer "
                    "arriving"
                )
            reason += ": if the next attempt is rejected, the user must reconnect"
        written = claim.record_failure(reason, next_attempt_at, calls.records)
        if written == WriteResult.LOST_RACE:
            return AccountResult(
                account.id, account.open_id, Result.SKIPPED, "refreshed by another run meanwhile"
            )
        log.info(
            "account %s (%s): %s; next attempt after %s",
            account.id,
            account.open_id,
            reason,
            iso(next_attempt_at),
        )
        return AccountResult(account.id, account.open_id, Result.FAILED, reason)


class _Calls:
    """The calls made for one account: the attempt history, and whether an answer was lost."""

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []
        self.answer_lost = False
        self.lost_at: datetime | None = None  # when the first call whose answer was lost began

    def add(self, started_at: datetime, outcome: Result, answer: TokenGrant | TikTokError) -> None:
        if isinstance(answer, RefreshFailed) and answer.maybe_processed:
            self.answer_lost = True
            if self.lost_at is None:
                self.lost_at = started_at
        if isinstance(answer, TokenGrant):
            error_code = None
            notes = getattr(answer, "notes", ())  # what was odd about an accepted answer
            message = "; ".join(notes) if notes else None
        else:
            error_code, message = answer.error_code, answer.reason
        self.records.append(
            AttemptRecord(
                attempted_at=started_at,
                outcome=outcome,
                duration_ms=round(answer.elapsed * 1000),
                http_status=answer.http_status,
                error_code=error_code,
                log_id=answer.log_id,
                message=message,
            )
        )


def describe_exception(error: BaseException) -> str:
    """An unexpected error as one safe line: its type and scrubbed, bounded text."""
    text = safe_text(scrub(str(error)[:1000]), 200)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
