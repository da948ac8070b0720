"""The refresh run: the domain of tokenrefresh, with no Typer and no rich in it.

    lock -> stream the plan's accounts in batches -> workers claim one account each
         -> AccountRefresher: decrypt -> TikTok -> store and commit at once

The run owns what is shared: the lock (checked every few seconds), the time budget,
signals, the throttle and breaker every worker paces itself by, and the run's record.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.adapters.locks import RunLock
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.logs import set_run_id
from tokenrefresh.base.outcomes import TokenEndpoint
from tokenrefresh.errors import ClientRejected, ConfigError, DatabaseError, TokenRefreshError
from tokenrefresh.services.refresh.account import (
    TIKTOK_APP,
    AccountRefresher,
    AppNames,
    describe_exception,
)
from tokenrefresh.services.refresh.control import RunControl
from tokenrefresh.services.refresh.observers import NoObserver, RunObserver
from tokenrefresh.services.refresh.pacing import CircuitBreaker, Pacing, Throttle
from tokenrefresh.services.refresh.plan import Plan
from tokenrefresh.services.refresh.report import AccountResult, Result, RunReport, StopReason
from tokenrefresh.storage.records import Candidate
from tokenrefresh.storage.repository import GrantNotStored, Repository

__all__ = ["AppRun", "Refresher"]

log = logging.getLogger("tokenrefresh.refresh")

LOCK_CHECK_INTERVAL = 2.0  # seconds


@dataclass(frozen=True)
class AppRun:
    """One app's part of a run: the plan of its accounts, the client that refreshes them (its
    provider's profile), and what messages call them. Each part has its own throttle, breaker
    and stop, so one provider's 429s or outage slow or stop that app's part alone."""

    plan: Plan
    client: TokenEndpoint
    names: AppNames = TIKTOK_APP


class Refresher:
    """Runs a plan: refreshes its accounts with `concurrency` workers; one instance per run.

    `run` takes one plan (refreshed with `client`) or the parts of a run over several apps,
    run side by side. `lock` is None only where row locks alone keep runs apart (named
    accounts on PostgreSQL); every other run holds its run lock from start to end.
    """

    def __init__(
        self,
        repository: Repository,
        cipher: TokenCipher,
        client: TokenEndpoint | None,
        lock: RunLock | None,
        *,
        clock: Clock = utcnow,
        observer: RunObserver | None = None,
    ) -> None:
        self._repository = repository
        self._cipher = cipher
        self._client = client
        self._lock = lock
        self._clock = clock
        self._observer = observer or NoObserver()
        self._control = RunControl()
        self._lock_checked_at = time.monotonic()
        self._lock_check = threading.Lock()

    def request_stop(self, signal_number: int, signal_name: str) -> None:
        """Stop claiming; in-flight refreshes finish and store their tokens.

        Safe to call from a signal handler: it sets one attribute and nothing else.
        """
        self._control.pending_signal = (signal_number, signal_name)

    def run(self, plan: Plan | Sequence[AppRun]) -> RunReport:
        if isinstance(plan, Plan):
            if self._client is None:
                raise TypeError("a single plan needs the Refresher's client")
            parts: list[AppRun] = [AppRun(plan, self._client)]
        else:
            parts = list(plan)
        if not parts:
            raise ValueError("a run needs at least one plan")
        if self._lock is None:
            return self._run(parts)
        with self._lock:
            return self._run(parts)

    def _run(self, parts: list[AppRun]) -> RunReport:
        first, control = parts[0].plan, self._control
        options = first.options
        if options.max_runtime:
            control.deadline = time.monotonic() + options.max_runtime.total_seconds()
        started = time.monotonic()
        report = RunReport(dry_run=False, started_at=first.due.now)
        report.run_id = run_id = self._repository.start_run(
            "refresh",
            host=socket.gethostname(),
            pid=os.getpid(),
            shard=str(options.shard) if options.shard else None,
        )
        set_run_id(run_id)
        report_lock = threading.Lock()
        # One part alone is the run (its stop is the run's); several each stop on their own.
        dispatches = [
            _Dispatch(
                part,
                control if len(parts) == 1 else RunControl(parent=control),
                self._repository,
                self._cipher,
                self._clock,
                report,
                report_lock,
                self._observer,
            )
            for part in parts
        ]
        counts = [part.plan.count() for part in parts]
        total = None if None in counts else sum(count or 0 for count in counts)
        self._observer.run_started(total)
        for dispatch, count in zip(dispatches, counts, strict=True):
            dispatch.log_start(report.run_id, count, several=len(parts) > 1)
        try:
            if len(dispatches) == 1:
                self._dispatch(dispatches[0])
            else:
                with ThreadPoolExecutor(len(dispatches), thread_name_prefix="app") as pool:
                    for done in [pool.submit(self._dispatch, each) for each in dispatches]:
                        done.result()
        finally:
            self._observer.run_finished()
            for dispatch in dispatches:
                dispatch.pacing.throttle.wake()
            # A signal that came while the last calls were in flight still ends the run
            # as stopped by it (143/130): `stopping` turns a pending signal into the stop.
            _ = control.stopping
            report.finished_at = self._clock()
            report.duration_seconds = time.monotonic() - started
            _stop_of(report, control, dispatches)
            report.signal_number = control.signal_number
            if report.stop_reason and not first.explicit and report.error is None:
                report.left_due = _count_due(parts)
                if report.stop_reason == StopReason.MAX_RUNTIME and report.left_due == 0:
                    report.stop_reason = report.stop_message = None  # it all got done
            self._finish_run(report, report.error)
        return report

    def _dispatch(self, dispatch: _Dispatch) -> None:
        """Hand one part's accounts to its workers, at most `concurrency` in flight."""
        control, concurrency = dispatch.control, dispatch.part.plan.options.concurrency
        slots = threading.BoundedSemaphore(concurrency)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="refresh") as pool:
            try:
                for candidate in dispatch.part.plan.candidates(lambda: control.stopping):
                    if not self._wait_for_slot(slots, control):
                        break
                    future = pool.submit(dispatch.worker.refresh_one, candidate)
                    future.add_done_callback(
                        partial(_finished, slots=slots, control=control, run=self._control)
                    )
            except DatabaseError as error:
                # Reading the next batch failed; the refreshes in flight still finish.
                self._control.stop(StopReason.DATABASE_ERROR, str(error))

    def _wait_for_slot(self, slots: threading.BoundedSemaphore, control: RunControl) -> bool:
        """Block until fewer than `concurrency` accounts are in flight; False: stop instead."""
        while not slots.acquire(timeout=0.2):
            self._check_lock()
            if control.stopping:
                return False
        self._check_lock()
        if control.stopping:
            slots.release()
            return False
        return True

    def _check_lock(self) -> None:
        """Every few seconds: is the run lock still ours? (Its connection may be killed.)
        One part's dispatcher checks at a time; the others go on meanwhile."""
        now = time.monotonic()
        if self._lock is None or now - self._lock_checked_at < LOCK_CHECK_INTERVAL:
            return
        if not self._lock_check.acquire(blocking=False):
            return
        try:
            self._lock_checked_at = now
            if not self._lock.still_held():
                self._control.stop(
                    StopReason.LOCK_LOST,
                    "lost the run lock (was the database connection dropped?); in-flight "
                    "refreshes finished, nothing new was claimed",
                )
        finally:
            self._lock_check.release()

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


class _Dispatch:
    """One part of a run as it runs: its stop, its pacing and its worker."""

    def __init__(
        self,
        part: AppRun,
        control: RunControl,
        repository: Repository,
        cipher: TokenCipher,
        clock: Clock,
        report: RunReport,
        report_lock: threading.Lock,
        observer: RunObserver,
    ) -> None:
        options = part.plan.options
        self.part, self.control = part, control
        self.pacing = Pacing(
            throttle=Throttle(options.concurrency, options.rate_limit),
            breaker=CircuitBreaker(provider=part.names.provider),
            control=control,
        )
        refresher = AccountRefresher(
            part.client, cipher, clock=clock, pacing=self.pacing, names=part.names
        )
        self.worker = _Worker(repository, refresher, part.plan, report, report_lock, observer)

    def log_start(self, run_id: int | None, count: int | None, *, several: bool) -> None:
        options = self.part.plan.options
        log.info(
            "refresh run %s: %s%s due (window %s, concurrency %d%s)",
            run_id,
            f"app {self.part.plan.app}: " if several else "",
            "?" if count is None else count,
            format_duration(self.part.plan.window),
            options.concurrency,
            f", shard {options.shard}" if options.shard else "",
        )


def _stop_of(report: RunReport, run: RunControl, dispatches: list[_Dispatch]) -> None:
    """Why the run stopped: its own reason first, else the first app part's (named)."""
    report.stop_reason, report.stop_message, report.error = run.reason, run.message, run.fatal
    if run.reason is not None or run.fatal is not None:
        return
    for dispatch in dispatches:
        control = dispatch.control
        if control is run or (control.reason is None and control.fatal is None):
            continue
        prefix = f"app {dispatch.part.plan.app}: "
        if report.stop_reason is None:
            report.stop_reason = control.reason
            report.stop_message = prefix + (control.message or "")
            fatal = control.fatal
            if isinstance(fatal, ClientRejected):
                fatal = ClientRejected(prefix + fatal.message)
            report.error = fatal
        else:
            log.warning("%s%s", prefix, control.message)


def _count_due(parts: Sequence[AppRun]) -> int | None:
    counts = [part.plan.count_due() for part in parts]
    return None if None in counts else sum(count or 0 for count in counts)


class _Worker:
    """What each worker thread does with one candidate: claim it, refresh it, record it."""

    def __init__(
        self,
        repository: Repository,
        refresher: AccountRefresher,
        plan: Plan,
        report: RunReport,
        report_lock: threading.Lock,
        observer: RunObserver,
    ) -> None:
        self._repository = repository
        self._refresher = refresher
        self._claim_rule = plan.claim_rule
        self._report = report
        self._observer = observer
        self._report_lock = report_lock

    def refresh_one(self, candidate: Candidate) -> None:
        """Whatever goes wrong with one account becomes its own counted result; only
        run-level causes (the database gone, the app rejected) escape to stop the run."""
        result: AccountResult | None
        try:
            with self._repository.claim(
                candidate.id, self._claim_rule, self._report.run_id
            ) as claim:
                if claim is None:
                    result = AccountResult(
                        candidate.id,
                        candidate.open_id,
                        Result.SKIPPED,
                        "another run has it, or it was refreshed meanwhile",
                    )
                else:
                    result = self._refresher.refresh(claim)
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
                f"could not be refreshed: {describe_exception(error)}",
            )
        if result is not None:
            self._record(result)

    def _record(self, result: AccountResult) -> None:
        with self._report_lock:
            self._report.add(result)
        self._observer.account_done(result)


def _finished(
    done: Future[None],
    *,
    slots: threading.BoundedSemaphore,
    control: RunControl,
    run: RunControl,
) -> None:
    """A worker is done: record why its part (`control`: the app's credentials refused) or
    the whole run (`run`: the database) must stop, if it must, then free its slot."""
    error = done.exception()
    if error is None:
        slots.release()
        return
    if isinstance(error, GrantNotStored):
        run.stop(
            StopReason.DATABASE_ERROR,
            "the database did not take a new token pair (the lost account above); the run "
            "stopped so that no more refresh tokens are spent",
        )
    elif isinstance(error, DatabaseError):
        run.stop(StopReason.DATABASE_ERROR, str(error))
    elif isinstance(error, TokenRefreshError):
        control.abort(error)
    else:  # refresh_one turns every account-level error into a result: this is a bug
        log.debug("unexpected error in a refresh worker", exc_info=error)
        run.abort(TokenRefreshError(f"unexpected error: {describe_exception(error)}"))
    # Only now: the dispatcher, woken by the free slot, must already see the stop.
    slots.release()
