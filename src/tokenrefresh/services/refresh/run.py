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
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.adapters.locks import RunLock
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.logs import set_run_id
from tokenrefresh.base.outcomes import TokenEndpoint
from tokenrefresh.errors import ClientRejected, ConfigError, DatabaseError, TokenRefreshError
from tokenrefresh.services.refresh.account import AccountRefresher, describe_exception
from tokenrefresh.services.refresh.control import RunControl
from tokenrefresh.services.refresh.observers import NoObserver, RunObserver
from tokenrefresh.services.refresh.pacing import CircuitBreaker, Pacing, Throttle
from tokenrefresh.services.refresh.plan import Plan
from tokenrefresh.services.refresh.report import AccountResult, Result, RunReport, StopReason
from tokenrefresh.storage.records import Candidate
from tokenrefresh.storage.repository import GrantNotStored, Repository

__all__ = ["Refresher"]

log = logging.getLogger("tokenrefresh.refresh")

LOCK_CHECK_INTERVAL = 2.0  # seconds


class Refresher:
    """Runs a plan: refreshes its accounts with `concurrency` workers; one instance per run.

    `lock` is None only where row locks alone keep runs apart (named accounts on
    PostgreSQL); every other run holds its run lock from start to end.
    """

    def __init__(
        self,
        repository: Repository,
        cipher: TokenCipher,
        client: TokenEndpoint,
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

    def request_stop(self, signal_number: int, signal_name: str) -> None:
        """Stop claiming; in-flight refreshes finish and store their tokens.

        Safe to call from a signal handler: it sets one attribute and nothing else.
        """
        self._control.pending_signal = (signal_number, signal_name)

    def run(self, plan: Plan) -> RunReport:
        if self._lock is None:
            return self._run(plan)
        with self._lock:
            return self._run(plan)

    def _run(self, plan: Plan) -> RunReport:
        options, control = plan.options, self._control
        if options.max_runtime:
            control.deadline = time.monotonic() + options.max_runtime.total_seconds()
        started = time.monotonic()
        report = RunReport(dry_run=False, started_at=plan.due.now)
        report.run_id = run_id = self._repository.start_run(
            "refresh",
            host=socket.gethostname(),
            pid=os.getpid(),
            shard=str(options.shard) if options.shard else None,
        )
        set_run_id(run_id)
        pacing = Pacing(
            throttle=Throttle(options.concurrency, options.rate_limit),
            breaker=CircuitBreaker(),
            control=control,
        )
        worker = _Worker(
            self._repository,
            AccountRefresher(self._client, self._cipher, clock=self._clock, pacing=pacing),
            plan,
            report,
            self._observer,
        )
        total = plan.count()
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
            self._dispatch(plan, worker)
        finally:
            self._observer.run_finished()
            pacing.throttle.wake()
            # A signal that came while the last calls were in flight still ends the run
            # as stopped by it (143/130): `stopping` turns a pending signal into the stop.
            _ = control.stopping
            report.finished_at = self._clock()
            report.duration_seconds = time.monotonic() - started
            report.stop_reason, report.stop_message = control.reason, control.message
            report.signal_number = control.signal_number
            report.error = control.fatal
            if control.reason and not plan.explicit and control.fatal is None:
                report.left_due = plan.count_due()
                if report.stop_reason == StopReason.MAX_RUNTIME and report.left_due == 0:
                    report.stop_reason = report.stop_message = None  # it all got done
            self._finish_run(report, control.fatal)
        return report

    def _dispatch(self, plan: Plan, worker: _Worker) -> None:
        """Hand accounts to the workers, at most `concurrency` in flight."""
        control, concurrency = self._control, plan.options.concurrency
        slots = threading.BoundedSemaphore(concurrency)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="refresh") as pool:
            try:
                for candidate in plan.candidates(lambda: control.stopping):
                    if not self._wait_for_slot(slots):
                        break
                    future = pool.submit(worker.refresh_one, candidate)
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


class _Worker:
    """What each worker thread does with one candidate: claim it, refresh it, record it."""

    def __init__(
        self,
        repository: Repository,
        refresher: AccountRefresher,
        plan: Plan,
        report: RunReport,
        observer: RunObserver,
    ) -> None:
        self._repository = repository
        self._refresher = refresher
        self._claim_rule = plan.claim_rule
        self._report = report
        self._observer = observer
        self._report_lock = threading.Lock()

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
    done: Future[None], *, slots: threading.BoundedSemaphore, control: RunControl
) -> None:
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
        control.abort(TokenRefreshError(f"unexpected error: {describe_exception(error)}"))
    # Only now: the dispatcher, woken by the free slot, must already see the stop.
    slots.release()
