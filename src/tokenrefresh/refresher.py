"""The refresh run: the domain of tokenrefresh, with no Typer and no rich in it.

    lock -> stream due accounts in batches -> workers claim one account each
         -> decrypt -> TikTok (retries, throttle, breaker) -> store and commit at once

A rotated refresh token is worth more than anything else in the run: on success the new
pair is stored and committed before anything else happens with the answer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Protocol

from tokenrefresh.clock import Clock, utcnow
from tokenrefresh.crypto import TokenCipher
from tokenrefresh.durations import format_duration
from tokenrefresh.errors import (
    EXIT_FAILURES,
    EXIT_OK,
    AccountNotFound,
    ClientRejected,
    ConfigError,
    DatabaseError,
    DecryptionError,
    TokenRefreshError,
)
from tokenrefresh.locks import RunLock
from tokenrefresh.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenEndpoint,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.pacing import CircuitBreaker, FailureBackoff, RetryPolicy, Throttle
from tokenrefresh.scrub import safe_text, scrub
from tokenrefresh.storage.records import (
    AccountStatus,
    AttemptRecord,
    Candidate,
    Due,
    NewTokens,
    Shard,
    WriteResult,
)
from tokenrefresh.storage.repository import Claim, GrantNotStored, Repository

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_RUNTIME",
    "DEFAULT_WINDOW",
    "AccountResult",
    "PlannedRefresh",
    "RefreshOptions",
    "Refresher",
    "RunObserver",
    "RunReport",
]

log = logging.getLogger(__name__)

# With 2-hour access tokens and cron every 30 minutes: an account is first taken with
# 60-90 minutes left; if that tick is missed (or its run is slow), the next one still
# finds 30-60 minutes left, enough for a full run of up to DEFAULT_MAX_RUNTIME.
DEFAULT_WINDOW = timedelta(minutes=90)
# 8 calls in flight at ~100 ms each is ~80 refreshes/s: 100,000 accounts with 2-hour
# tokens need ~37/s on average. It keeps TikTok, the database (8 + 2 connections) and a
# small host comfortable; raise it for more accounts, or shard across hosts.
DEFAULT_CONCURRENCY = 8
# Below the 30-minute cron interval, so a run ends (and frees its lock) before the next.
DEFAULT_MAX_RUNTIME = timedelta(minutes=25)
BATCH_SIZE = 1000  # due accounts read at once: a few hundred kB, 10 queries for 10,000
LOCK_CHECK_INTERVAL = 2.0  # seconds
MAX_REPORTED_PROBLEMS = 1000


# ----------------------------------------------------------------------------- options, report


@dataclass(frozen=True)
class RefreshOptions:
    window: timedelta = DEFAULT_WINDOW
    account_ids: tuple[int, ...] = ()
    dry_run: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    rate_limit: float | None = None
    max_runtime: timedelta | None = DEFAULT_MAX_RUNTIME
    shard: Shard | None = None
    batch_size: int = BATCH_SIZE


@dataclass(frozen=True)
class PlannedRefresh:
    """What a dry run would refresh, and why."""

    account_id: int
    open_id: str
    label: str | None
    access_expires_at: datetime
    reason: str


@dataclass(frozen=True)
class AccountResult:
    """How one account's refresh ended."""

    account_id: int
    open_id: str
    result: Result
    detail: str | None = None
    access_expires_at: datetime | None = None


class Result(StrEnum):
    REFRESHED = "refreshed"
    EXPIRED = "expired"  # TikTok rejected the refresh token: the user must reconnect
    FAILED = "failed"  # no verdict on the token; tried again by a later run
    SKIPPED = "skipped"  # another run had it or refreshed it first; nothing to do
    LOST = "lost"  # TikTok issued a new pair that could not be stored: the user may reconnect


class StopReason(StrEnum):
    MAX_RUNTIME = "max_runtime"
    SIGNAL = "signal"
    CIRCUIT_BREAKER = "circuit_breaker"
    RATE_LIMITED = "rate_limited"
    DATABASE_ERROR = "database_error"
    LOCK_LOST = "lock_lost"
    CLIENT_REJECTED = "client_rejected"  # TikTok rejected the app's credentials (exit 3)
    ERROR = "error"  # anything else that ended the run (its exit code is the error's)


@dataclass
class RunReport:
    """What a run did: counts, the accounts that need attention, and why it stopped."""

    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Result, 0))
    problems: list[AccountResult] = field(default_factory=list)
    problems_not_listed: int = 0
    planned: list[PlannedRefresh] = field(default_factory=list)
    stop_reason: str | None = None
    stop_message: str | None = None
    left_due: int | None = None
    signal_number: int | None = None
    duration_seconds: float = 0.0
    error: TokenRefreshError | None = None  # what ended the run, with its own exit code

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.signal_number is not None:
            return 128 + self.signal_number
        if any(self.counts[result] for result in _PROBLEMS) or self.stop_reason:
            return EXIT_FAILURES
        return EXIT_OK

    @property
    def outcome(self) -> str:
        if self.stop_reason:
            return "stopped"
        return "ok" if self.exit_code == EXIT_OK else "failures"

    def add(self, result: AccountResult) -> None:
        self.counts[result.result] += 1
        if result.result in _PROBLEMS:
            if len(self.problems) < MAX_REPORTED_PROBLEMS:
                self.problems.append(result)
            else:
                self.problems_not_listed += 1


_PROBLEMS = (Result.LOST, Result.EXPIRED, Result.FAILED)


class RunObserver(Protocol):
    """Hooks for progress bars and health-check pings.

    run_started: the lock is held and the run recorded; account_done: from worker threads;
    run_finished: always, last.
    """

    def run_started(self, total: int | None) -> None: ...

    def account_done(self, result: AccountResult) -> None: ...

    def run_finished(self) -> None: ...


class _NoObserver:
    def run_started(self, total: int | None) -> None:
        pass

    def account_done(self, result: AccountResult) -> None:
        pass

    def run_finished(self) -> None:
        pass


# ----------------------------------------------------------------------------- control


class _Control:
    """Shared state of a run: whether to stop claiming, and why (the first reason wins).

    A signal handler only stores the signal in a plain attribute (taking a lock there
    could deadlock against the interrupted main thread); `stopping` turns it into a stop.
    """

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.deadline: float | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.fatal: TokenRefreshError | None = None  # ends the run with its exit code
        self.pending_signal: tuple[int, str] | None = None
        self.signal_number: int | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str, message: str) -> None:
        with self._lock:
            if self.reason is None and self.fatal is None:
                self.reason, self.message = reason, message
                log.warning("stopping the run: %s", message)
        self.stop_event.set()

    def abort(self, error: TokenRefreshError) -> None:
        """Stop with this error's exit code (TikTok rejected the app's credentials)."""
        reason = (
            StopReason.CLIENT_REJECTED if isinstance(error, ClientRejected) else StopReason.ERROR
        )
        with self._lock:
            if self.fatal is None:
                self.fatal = error
                self.reason, self.message = reason, error.message
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        if not self.stop_event.is_set():
            if self.pending_signal is not None:
                self.signal_number, name = self.pending_signal
                self.stop(
                    StopReason.SIGNAL,
                    f"received {name}: in-flight refreshes finish and store their tokens",
                )
            elif self.past_deadline():
                self.stop(StopReason.MAX_RUNTIME, "the run reached its --max-runtime")
        return self.stop_event.is_set()

    def past_deadline(self, extra: float = 0.0) -> bool:
        return self.deadline is not None and time.monotonic() + extra >= self.deadline

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early if the run is stopping; True if it is."""
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.stop_event.wait(min(left, 0.2))
        return True


# ----------------------------------------------------------------------------- refresher


class Refresher:
    """Refreshes due accounts; one instance per run."""

    def __init__(
        self,
        repository: Repository,
        cipher: TokenCipher,
        client: TokenEndpoint | None,
        lock: RunLock | None,
        *,
        clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
        backoff: FailureBackoff | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self._repository = repository
        self._cipher = cipher
        self._client = client
        self._lock = lock
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._backoff = backoff or FailureBackoff()
        self._observer = observer or _NoObserver()
        self._control = _Control()
        self._lock_checked_at = time.monotonic()

    def request_stop(self, signal_number: int, signal_name: str) -> None:
        """Stop claiming; in-flight refreshes finish and store their tokens.

        Safe to call from a signal handler: it sets one attribute and nothing else.
        """
        self._control.pending_signal = (signal_number, signal_name)

    def run(self, options: RefreshOptions) -> RunReport:
        # An id given twice is refreshed once: a second worker would spend the token again.
        options = replace(options, account_ids=tuple(dict.fromkeys(options.account_ids)))
        now = self._clock()
        due = Due(now=now, horizon=now + options.window, shard=options.shard)
        if options.account_ids:
            self._check_accounts_exist(options.account_ids)
        if options.dry_run:
            return self._plan(options, due)
        if self._client is None:
            raise ValueError("a refresh that writes needs a TikTok client")
        if self._lock is None:
            # Only for --account-id on PostgreSQL: its row locks keep overlapping runs apart.
            return self._run_locked(options, due)
        with self._lock:
            return self._run_locked(options, due)

    # --- dry run ----------------------------------------------------------------

    def _plan(self, options: RefreshOptions, due: Due) -> RunReport:
        report = RunReport(dry_run=True, started_at=due.now)
        for candidate in self._candidates(options, due):
            report.planned.append(
                PlannedRefresh(
                    account_id=candidate.id,
                    open_id=candidate.open_id,
                    label=candidate.label,
                    access_expires_at=candidate.access_expires_at,
                    reason=_why(candidate, due, explicit=bool(options.account_ids)),
                )
            )
        report.finished_at = self._clock()
        return report

    # --- the run ----------------------------------------------------------------

    def _run_locked(self, options: RefreshOptions, due: Due) -> RunReport:
        deadline = (
            time.monotonic() + options.max_runtime.total_seconds() if options.max_runtime else None
        )
        control = self._control
        control.deadline = deadline
        started = time.monotonic()
        report = RunReport(dry_run=False, started_at=due.now)
        report.run_id = self._repository.start_run(
            "refresh",
            host=socket.gethostname(),
            pid=os.getpid(),
            shard=str(options.shard) if options.shard else None,
        )
        throttle = Throttle(options.concurrency, options.rate_limit)
        breaker = CircuitBreaker()
        work = _Work(
            self, report, control, throttle, breaker, due, explicit=bool(options.account_ids)
        )
        total = len(options.account_ids) if options.account_ids else self._count_due(due)
        self._observer.run_started(total)
        log.info(
            "refresh run %s: %s due (window %s, concurrency %d%s)",
            report.run_id,
            "?" if total is None else total,
            format_duration(options.window),
            options.concurrency,
            f", shard {options.shard}" if options.shard else "",
        )
        try:
            self._dispatch(options, due, work)
        finally:
            self._observer.run_finished()
            throttle.wake()
            # A signal that came while the last calls were in flight still ends the run
            # as stopped by it (143/130): `stopping` turns a pending signal into the stop.
            _ = control.stopping
            report.finished_at = self._clock()
            report.duration_seconds = time.monotonic() - started
            report.stop_reason, report.stop_message = control.reason, control.message
            report.signal_number = control.signal_number
            report.error = control.fatal
            if control.reason and not options.account_ids and control.fatal is None:
                report.left_due = self._count_due(due)
                if report.stop_reason == StopReason.MAX_RUNTIME and report.left_due == 0:
                    report.stop_reason = report.stop_message = None  # it all got done
            self._finish_run(report, control.fatal)
        return report

    def _dispatch(self, options: RefreshOptions, due: Due, work: _Work) -> None:
        """Hand accounts to the workers, at most `concurrency` in flight."""
        control = self._control
        slots = threading.BoundedSemaphore(options.concurrency)
        with ThreadPoolExecutor(options.concurrency, thread_name_prefix="refresh") as pool:
            try:
                for candidate in self._candidates(options, due):
                    if not self._wait_for_slot(slots):
                        break
                    future = pool.submit(work.refresh_one, candidate)
                    future.add_done_callback(partial(_finished, slots=slots, control=control))
            except DatabaseError as error:
                # Reading the next batch failed; the refreshes in flight still finish.
                control.stop(StopReason.DATABASE_ERROR, str(error))

    def _wait_for_slot(self, slots: threading.BoundedSemaphore) -> bool:
        """Block until fewer than `concurrency` accounts are in flight; False: stop instead."""
        while not slots.acquire(timeout=0.2):
            self._check_lock()
            if self._control.stopping:
                return False
        self._check_lock()
        if self._control.stopping:
            slots.release()
            return False
        return True

    def _check_lock(self) -> None:
        """Every few seconds: is the run lock still ours? (Its connection may be killed.)"""
        now = time.monotonic()
        if self._lock is None or now - self._lock_checked_at < LOCK_CHECK_INTERVAL:
            return
        self._lock_checked_at = now
        if not self._lock.still_held():
            self._control.stop(
                StopReason.LOCK_LOST,
                "lost the run lock (was the database connection dropped?); in-flight "
                "refreshes finished, nothing new was claimed",
            )

    def _candidates(self, options: RefreshOptions, due: Due) -> Iterator[Candidate]:
        if options.account_ids:
            yield from self._repository.candidates(options.account_ids)
            return
        for batch in self._repository.due_batches(due, options.batch_size):
            yield from batch
            if self._control.stopping:
                return

    def _count_due(self, due: Due) -> int | None:
        try:
            return self._repository.count_due(due)
        except DatabaseError as error:
            log.warning("could not count the due accounts: %s", error)
            return None

    def _check_accounts_exist(self, account_ids: tuple[int, ...]) -> None:
        missing = sorted(set(account_ids) - self._repository.existing_ids(account_ids))
        if missing:
            listed = ", ".join(str(account_id) for account_id in missing)
            raise AccountNotFound(
                f"no account with id {listed}"
                if len(missing) == 1
                else f"no accounts with ids {listed}"
            )

    def _finish_run(self, report: RunReport, fatal: TokenRefreshError | None) -> None:
        if report.run_id is None:
            return
        message: str | None
        if fatal is not None:
            outcome = "config_error" if isinstance(fatal, ConfigError) else "error"
            exit_code, message = fatal.exit_code, fatal.message
        else:
            outcome, exit_code, message = report.outcome, report.exit_code, report.stop_message
        try:
            self._repository.finish_run(
                report.run_id,
                outcome=outcome,
                exit_code=exit_code,
                counts=dict(report.counts),
                message=message,
            )
        except DatabaseError as error:
            log.error("could not record the end of run %s: %s", report.run_id, error)


def _finished(done: Future[None], *, slots: threading.BoundedSemaphore, control: _Control) -> None:
    """A worker is done: record why the run must stop, if it must, then free its slot."""
    error = done.exception()
    if error is None:
        slots.release()
        return
    if isinstance(error, GrantNotStored):
        control.stop(
            StopReason.DATABASE_ERROR,
            "the database did not take a new token pair (the lost account above); the run "
            "stopped so that no more refresh tokens are spent",
        )
    elif isinstance(error, DatabaseError):
        control.stop(StopReason.DATABASE_ERROR, str(error))
    elif isinstance(error, TokenRefreshError):
        control.abort(error)
    else:  # refresh_one turns every account-level error into a result: this is a bug
        log.debug("unexpected error in a refresh worker", exc_info=error)
        control.abort(TokenRefreshError(f"unexpected error: {_describe_exception(error)}"))
    # Only now: the dispatcher, woken by the free slot, must already see the stop.
    slots.release()


# ----------------------------------------------------------------------------- one account


class _Work:
    """What each worker does for one account; shared by all workers of a run."""

    def __init__(
        self,
        refresher: Refresher,
        report: RunReport,
        control: _Control,
        throttle: Throttle,
        breaker: CircuitBreaker,
        due: Due,
        *,
        explicit: bool,
    ) -> None:
        assert refresher._client is not None
        self._client = refresher._client
        self._r = refresher
        self._report = report
        self._control = control
        self._throttle = throttle
        self._breaker = breaker
        self._due = None if explicit else due
        self._report_lock = threading.Lock()

    def refresh_one(self, candidate: Candidate) -> None:
        """Refresh one account. Whatever goes wrong with it becomes its own counted result;
        only run-level causes (the database gone, the app rejected) escape to stop the run."""
        result: AccountResult | None
        try:
            with self._r._repository.claim(candidate.id, self._due, self._report.run_id) as claim:
                if claim is None:
                    result = AccountResult(
                        candidate.id,
                        candidate.open_id,
                        Result.SKIPPED,
                        "another run has it, or it was refreshed meanwhile",
                    )
                else:
                    result = self._refresh_guarded(claim)
        except GrantNotStored as lost:
            self._record(AccountResult(candidate.id, candidate.open_id, Result.LOST, lost.message))
            raise
        except (DatabaseError, ClientRejected):
            raise
        except Exception as error:  # reading or claiming this one row failed
            log.debug("account %s: unexpected error", candidate.id, exc_info=error)
            result = AccountResult(
                candidate.id,
                candidate.open_id,
                Result.FAILED,
                f"could not be refreshed: {_describe_exception(error)}",
            )
        if result is not None:
            self._record(result)

    def _refresh_guarded(self, claim: Claim) -> AccountResult | None:
        """_refresh_claimed, with any error that is not run-level recorded as this account's."""
        try:
            return self._refresh_claimed(claim)
        except (DatabaseError, ClientRejected):
            raise
        except Exception as error:
            log.debug("account %s: unexpected error", claim.account.id, exc_info=error)
            reason = f"could not be refreshed: {_describe_exception(error)}"
            if not claim.closed:
                self._record_failure_quietly(claim, reason)
            return AccountResult(claim.account.id, claim.account.open_id, Result.FAILED, reason)

    def _record_failure_quietly(self, claim: Claim, reason: str) -> None:
        """Count the failure and back the account off, if the database lets us."""
        delay = self._r._backoff.after(claim.account.consecutive_failures + 1)
        try:
            claim.record_failure(reason, self._r._clock() + delay, [])
        except Exception as error:
            log.debug("account %s: could not record the failure", claim.account.id, exc_info=error)
            claim.release()

    def _record(self, result: AccountResult) -> None:
        with self._report_lock:
            self._report.add(result)
        self._r._observer.account_done(result)

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
            refresh_token = self._r._cipher.decrypt(account.refresh_token_ciphertext)
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
        policy = self._r._retry
        last_failure: RefreshFailed | None = None
        while self._throttle.acquire(lambda: self._control.stopping):
            answer = self._call_once(refresh_token, calls)
            if not isinstance(answer, RefreshFailed):
                return answer
            last_failure = answer
            if not self._retry_now(answer, len(calls.records), policy):
                return answer
            delay = policy.delay(len(calls.records), answer.retry_after)
            if self._control.past_deadline(extra=delay) or self._control.sleep(delay):
                return answer
        return last_failure

    def _call_once(
        self, refresh_token: str, calls: _Calls
    ) -> TokenGrant | UserTokenRejected | RefreshFailed:
        """One call, admitted by the throttle; its outcome counted by the breaker."""
        started_at = self._r._clock()
        throttled, retry_after = False, None
        try:
            grant = self._client.refresh(refresh_token)
        except UserTokenRejected as rejected:
            self._breaker.record(failed=False)
            calls.add(started_at, Result.EXPIRED, rejected)
            return rejected
        except AppCredentialsRejected as rejected:
            calls.add(started_at, Result.FAILED, rejected)
            raise ClientRejected(
                "TikTok rejected the app's credentials (TIKTOK_CLIENT_KEY / "
                "TIKTOK_CLIENT_SECRET), so the run stopped and no account was marked. "
                f"TikTok said: {rejected.reason}"
            ) from None
        except RefreshFailed as failed:
            throttled = failed.http_status == 429 or failed.retry_after is not None
            retry_after = failed.retry_after
            calls.add(started_at, Result.FAILED, failed)
            if failed.retryable and self._breaker.record(failed=True, description=failed.reason):
                self._control.stop(
                    StopReason.CIRCUIT_BREAKER,
                    f"TikTok is failing: {self._breaker.reason}; the remaining accounts are "
                    "left for the next run",
                )
            return failed
        finally:
            self._throttle.release(throttled=throttled, retry_after=retry_after)
        self._breaker.record(failed=False)
        calls.add(started_at, Result.REFRESHED, grant)
        return grant

    def _retry_now(self, failed: RefreshFailed, failures: int, policy: RetryPolicy) -> bool:
        if not failed.retryable or failures >= policy.attempts or self._control.stopping:
            return False
        if failed.retry_after is not None and failed.retry_after > policy.max_wait:
            self._control.stop(
                StopReason.RATE_LIMITED,
                f"TikTok asked to wait {failed.retry_after:.0f}s (Retry-After); the remaining "
                "accounts are left for the next run",
            )
            return False
        return True

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
                "TikTok issued a new token pair but it could not be stored "
                f"({_describe_exception(error)}); its user may have to reconnect"
            )
            log.error("account %s (%s): %s", account.id, account.open_id, detail)
            claim.release()
            return AccountResult(account.id, account.open_id, Result.LOST, detail)

    def _store(self, claim: Claim, grant: TokenGrant, calls: _Calls) -> AccountResult:
        account = claim.account
        cipher = self._r._cipher
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
                f"TikTok says this refresh token belongs to open_id {other!r}: the new tokens "
                "are stored, but the account is disabled until someone checks it"
            )
        elif account.status == AccountStatus.DISABLED:
            status = AccountStatus.DISABLED  # a refresh by id does not undo `accounts disable`
        written = claim.save_grant(tokens, calls.records, status=status, error=detail)
        if written == WriteResult.LOST_RACE:
            log.warning(
                "account %s (%s): TikTok issued a new token pair, but the account was "
                "re-imported meanwhile; the newer consent wins and this pair is not stored",
                account.id,
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
            grant.access_expires_at.isoformat(timespec="seconds"),
        )
        return AccountResult(
            account.id,
            account.open_id,
            Result.REFRESHED,
            access_expires_at=grant.access_expires_at,
        )

    def _rejected(self, claim: Claim, rejected: UserTokenRejected, calls: _Calls) -> AccountResult:
        account = claim.account
        reason = f"TikTok rejected the refresh token: {rejected.reason}"
        if calls.answer_lost:
            reason += (
                "; an earlier attempt in this run got no answer, so TikTok probably rotated the "
                "token then and the response carrying the new one was lost"
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
        log.warning("account %s (%s): expired: %s", account.id, account.open_id, reason)
        return AccountResult(account.id, account.open_id, Result.EXPIRED, reason)

    def _failed(self, claim: Claim, failed: RefreshFailed, calls: _Calls) -> AccountResult:
        account = claim.account
        backoff = self._r._backoff
        delay = backoff.after(account.consecutive_failures + 1)
        if failed.retry_after is not None:
            # Never parked longer than the back-off's cap, whatever date TikTok names.
            asked = timedelta(seconds=min(failed.retry_after, backoff.cap.total_seconds()))
            delay = max(delay, asked)
        next_attempt_at = self._r._clock() + delay
        reason = f"refresh failed: {failed.reason}"
        if failed.maybe_processed:
            reason += (
                "; TikTok may have rotated the token without the answer arriving: if the next "
                "attempt is rejected, the user must reconnect"
            )
        written = claim.record_failure(reason, next_attempt_at, calls.records)
        if written == WriteResult.LOST_RACE:
            return AccountResult(
                account.id, account.open_id, Result.SKIPPED, "refreshed by another run meanwhile"
            )
        log.warning(
            "account %s (%s): %s; next attempt after %s",
            account.id,
            account.open_id,
            reason,
            next_attempt_at.isoformat(timespec="seconds"),
        )
        return AccountResult(account.id, account.open_id, Result.FAILED, reason)


class _Calls:
    """The calls made for one account: the attempt history, and whether an answer was lost."""

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []
        self.answer_lost = False

    def add(self, started_at: datetime, outcome: Result, answer: TokenGrant | TikTokError) -> None:
        if isinstance(answer, RefreshFailed) and answer.maybe_processed:
            self.answer_lost = True
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


def _why(candidate: Candidate, due: Due, *, explicit: bool) -> str:
    if explicit:
        return f"requested with --account-id (status {candidate.status})"
    left = candidate.access_expires_at - due.now
    if left <= timedelta(0):
        return f"access token expired {format_duration(_whole_seconds(-left))} ago"
    return f"access token expires in {format_duration(_whole_seconds(left))}"


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=int(value.total_seconds()))


def _describe_exception(error: BaseException) -> str:
    """An unexpected error as one safe line: its type and scrubbed, bounded text."""
    text = safe_text(scrub(str(error)[:1000]), 200)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
