"""When a run stops, and why: the one state every worker of a run checks."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from tokenrefresh.errors import ClientRejected, TokenRefreshError
from tokenrefresh.services.refresh.report import StopReason

__all__ = ["ON_DEMAND", "RUN", "RunControl", "Wording"]

log = logging.getLogger("tokenrefresh.refresh")


@dataclass(frozen=True)
class Wording:
    """What a stop is called where it happens: a cron run, or one app's on-demand call."""

    stopping: str  # the log line when the stop comes, with the reason
    deadline: str  # the reason when the time is up
    left: str  # what becomes of the work not done
    rejected: str  # what came of TikTok rejecting the app's credentials


RUN = Wording(
    stopping="stopping the run: %s",
    deadline="the run reached its --max-runtime",
    left="the remaining accounts are left for the next run",
    rejected="so the run stopped and no account was marked",
)
ON_DEMAND = Wording(
    stopping="on-demand refresh stopped: %s",
    deadline="the caller's wait for a token ran out",
    left="no more calls are made for this request",
    rejected="so the account was not refreshed",
)


class RunControl:
    """Shared state of a run: whether to stop claiming, and why (the first reason wins).

    A signal handler only stores the signal in a plain attribute (taking a lock there
    could deadlock against the interrupted main thread); `stopping` turns it into a stop.
    """

    def __init__(self, wording: Wording = RUN, *, parent: RunControl | None = None) -> None:
        self.wording = wording
        # One app's part of a run: stopped on its own (its provider failing or refusing the
        # app) or with the whole run (a signal, the deadline, the lock or database lost).
        self.parent = parent
        self.stop_event = threading.Event()
        self.deadline: float | None = None
        self.reason: StopReason | None = None
        self.message: str | None = None
        self.fatal: TokenRefreshError | None = None  # ends the run with its exit code
        self.pending_signal: tuple[int, str] | None = None
        self.signal_number: int | None = None
        self._lock = threading.Lock()

    def stop(self, reason: StopReason, message: str) -> None:
        with self._lock:
            if self.reason is None and self.fatal is None:
                self.reason, self.message = reason, message
                log.warning(self.wording.stopping, message)
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
        if self.parent is not None and self.parent.stopping:
            return True
        if not self.stop_event.is_set():
            if self.pending_signal is not None:
                self.signal_number, name = self.pending_signal
                self.stop(
                    StopReason.SIGNAL,
                    f"received {name}: in-flight refreshes finish and store their tokens",
                )
            elif self.past_deadline():
                self.stop(StopReason.MAX_RUNTIME, self.wording.deadline)
        return self.stop_event.is_set()

    def past_deadline(self, extra: float = 0.0) -> bool:
        if self.parent is not None and self.parent.past_deadline(extra):
            return True
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
