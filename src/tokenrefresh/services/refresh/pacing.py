"""Pacing a run: retries with backoff, back-off between runs, a shared throttle, a breaker.

All of it is plain threading and arithmetic, shared by the refresher's worker threads;
`Pacing` bundles what one account's calls share with the rest of its run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from tokenrefresh.services.refresh.control import RunControl

__all__ = ["CircuitBreaker", "FailureBackoff", "Pacing", "RetryPolicy", "Throttle"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one account's refresh inside a run: exponential backoff, full jitter.

    A Retry-After longer than `max_wait` is not waited for inside the run: the account
    is left for a later run instead.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 30.0

    def delay(self, failed_attempts: int, retry_after: float | None) -> float:
        """Seconds to wait after the n-th failed attempt (n >= 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        jittered = random.uniform(0, ceiling)
        return max(jittered, retry_after or 0.0)


@dataclass(frozen=True)
class FailureBackoff:
    """How far an account's next attempt moves back after consecutive failed runs.

    5 min, 10, 20, 40, then every hour: the first retry still lands on the next
    30-minute cron tick, and an account that keeps failing does not hammer TikTok.
    """

    base: timedelta = timedelta(minutes=5)
    cap: timedelta = timedelta(hours=1)

    def after(self, consecutive_failures: int) -> timedelta:
        exponent = max(0, min(consecutive_failures - 1, 16))
        return min(self.cap, self.base * (1 << exponent))


class Throttle:
    """Admission for TikTok calls, shared by all workers of a run.

    - a rate limit (calls per second across all workers), if configured;
    - an adaptive concurrency limit: halved on every 429 (or Retry-After), grown back by
      one after as many successful calls as the current limit (AIMD, as TCP does);
    - a run-wide pause until a Retry-After has passed.
    A 429 seen by one worker so slows every worker, not just the one that saw it.
    """

    def __init__(
        self,
        concurrency: int,
        rate_limit: float | None = None,
        *,
        default_pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_limit = concurrency
        self.limit = concurrency
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        self._default_pause = default_pause
        self._clock = clock
        self._condition = threading.Condition()
        self._active = 0
        self._next_start = 0.0
        self._paused_until = 0.0
        self._successes = 0
        self.slowdowns = 0

    def acquire(self, stopping: Callable[[], bool]) -> bool:
        """Wait for a slot; False if the run started stopping while waiting."""
        with self._condition:
            while True:
                if stopping():
                    return False
                now = self._clock()
                wait = max(self._paused_until - now, self._next_start - now, 0.0)
                if wait <= 0 and self._active < self.limit:
                    self._active += 1
                    self._next_start = max(now, self._next_start) + self._interval
                    return True
                # Wake up at least every 0.2 s to notice a stop.
                self._condition.wait(timeout=min(wait, 0.2) if wait > 0 else 0.2)

    def release(self, *, throttled: bool, retry_after: float | None = None) -> None:
        """End a call; `throttled` if TikTok answered 429 or asked to wait."""
        with self._condition:
            self._active -= 1
            if throttled:
                self.slowdowns += 1
                self.limit = max(1, self.limit // 2)
                self._successes = 0
                pause = retry_after if retry_after is not None else self._default_pause
                self._paused_until = max(self._paused_until, self._clock() + pause)
            else:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self._max_limit:
                    self.limit += 1
                    self._successes = 0
            self._condition.notify_all()

    def wake(self) -> None:
        """Let waiting workers re-check their stop event now."""
        with self._condition:
            self._condition.notify_all()


class CircuitBreaker:
    """Opens when most recent calls failed transiently; stays open for the rest of the run."""

    def __init__(
        self,
        window: int = 20,
        min_calls: int = 10,
        failure_ratio: float = 0.8,
        *,
        provider: str = "TikTok",
    ) -> None:
        self._provider = provider
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._min_calls = min_calls
        self._failure_ratio = failure_ratio
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    def record(self, *, failed: bool, description: str = "") -> bool:
        """Count one call; True if this call opened the breaker."""
        with self._lock:
            if self.reason is not None:
                return False
            self._outcomes.append(failed)
            failures = sum(self._outcomes)
            calls = len(self._outcomes)
            if calls >= self._min_calls and failures >= self._failure_ratio * calls:
                self.reason = f"{failures} of the last {calls} calls to {self._provider} failed" + (
                    f" (last: {description})" if description else ""
                )
                return True
            return False


@dataclass(frozen=True)
class Pacing:
    """What one account's calls share with the rest of its run: the throttle (rate limit,
    Retry-After pauses), the circuit breaker, and the run's stop."""

    throttle: Throttle = field(default_factory=lambda: Throttle(1))
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    control: RunControl = field(default_factory=RunControl)
