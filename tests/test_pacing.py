"""Unit tests of the run's pacing: retry delays, back-off, the throttle and the breaker."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from conftest import Cli
from tokenrefresh.base.durations import format_duration, parse_duration
from tokenrefresh.services.refresh.pacing import (
    CircuitBreaker,
    FailureBackoff,
    RetryPolicy,
    Throttle,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def never() -> bool:
    return False


def test_retry_delay_grows_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    for failed in range(1, 10):
        ceiling = min(8.0, 0.5 * 2 ** (failed - 1))
        delays = [policy.delay(failed, None) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range
    assert policy.delay(1, 3.0) >= 3.0


def test_failure_backoff_doubles_up_to_an_hour() -> None:
    backoff = FailureBackoff()
    minutes = [backoff.after(n) / timedelta(minutes=1) for n in range(1, 8)]
    assert minutes == [5, 10, 20, 40, 60, 60, 60]
    assert backoff.after(10_000) == timedelta(hours=1)


def test_throttle_bounds_calls_in_flight() -> None:
    throttle = Throttle(concurrency=2)
    assert throttle.acquire(never)
    assert throttle.acquire(never)
    stop = threading.Event()
    waiter = threading.Thread(target=lambda: stop.set() if throttle.acquire(never) else None)
    waiter.start()
    assert not stop.wait(0.3)  # a third call must wait
    throttle.release(throttled=False)
    assert stop.wait(5)
    waiter.join()


def test_a_429_halves_the_limit_and_pauses_everyone() -> None:
    clock = FakeClock()
    throttle = Throttle(concurrency=8, clock=clock)
    assert throttle.acquire(never)
    throttle.release(throttled=True, retry_after=2.0)
    assert throttle.limit == 4
    assert throttle.slowdowns == 1
    stopping = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(throttle.acquire(stopping.is_set)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # paused: Retry-After has not passed on the fake clock
    clock.now += 1.5  # past the default pause (1 s), not yet past Retry-After
    waiter.join(0.5)
    assert waiter.is_alive()
    clock.now += 0.5
    waiter.join(5)
    assert result == [True]


def test_the_limit_halves_down_to_one_call() -> None:
    throttle = Throttle(concurrency=8)
    limits = []
    for _ in range(5):
        assert throttle.acquire(never)
        throttle.release(throttled=True, retry_after=0.0)
        limits.append(throttle.limit)
    assert limits == [4, 2, 1, 1, 1]
    assert throttle.slowdowns == 5


def test_successes_grow_the_limit_back() -> None:
    throttle = Throttle(concurrency=4)
    throttle.acquire(never)
    throttle.release(throttled=True, retry_after=0.0)
    assert throttle.limit == 2
    throttle.acquire(never)
    throttle.release(throttled=False)
    assert throttle.limit == 2  # one success is not yet as many as the limit
    throttle.acquire(never)
    throttle.release(throttled=False)
    assert throttle.limit == 3
    for _ in range(3):
        throttle.acquire(never)
        throttle.release(throttled=False)
    assert throttle.limit == 4
    for _ in range(10):
        throttle.acquire(never)
        throttle.release(throttled=False)
    assert throttle.limit == 4  # never above the configured concurrency


def test_rate_limit_spaces_starts() -> None:
    clock = FakeClock()
    throttle = Throttle(concurrency=10, rate_limit=4.0, clock=clock)
    assert throttle.acquire(never)
    started = threading.Event()
    waiter = threading.Thread(target=lambda: throttle.acquire(never) and started.set())
    waiter.start()
    assert not started.wait(0.4)  # the next start is 0.25 s later on the fake clock
    clock.now += 0.25
    assert started.wait(5)
    waiter.join()


def test_a_waiting_worker_gives_up_when_the_run_stops() -> None:
    throttle = Throttle(concurrency=1)
    assert throttle.acquire(never)
    stopping = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(throttle.acquire(stopping.is_set)))
    waiter.start()
    stopping.set()
    waiter.join(5)
    assert result == [False]


def test_breaker_opens_when_most_recent_calls_fail() -> None:
    breaker = CircuitBreaker(window=10, min_calls=5, failure_ratio=0.8)
    for _ in range(4):
        assert not breaker.record(failed=True)
    assert not breaker.is_open  # too few calls to judge
    assert breaker.record(failed=True, description="HTTP 503")
    assert breaker.is_open
    assert breaker.reason == "5 of the last 5 calls to TikTok failed (last: HTTP 503)"
    assert not breaker.record(failed=True)  # opens once


def test_breaker_stays_closed_with_enough_successes() -> None:
    breaker = CircuitBreaker(window=10, min_calls=5, failure_ratio=0.8)
    for index in range(100):
        breaker.record(failed=index % 3 != 0)  # two failures in three
    assert not breaker.is_open


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("0", 0), (" 2H ", 7200)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "m", "1x", "1h1h", "-5m", "1.5h", "h1"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["90", "3600", " 5 "])
def test_a_bare_number_is_refused_with_both_readings(text: str) -> None:
    number = text.strip()
    with pytest.raises(ValueError, match="has no unit") as raised:
        parse_duration(text)
    assert str(raised.value) == (
        f"{number!r} has no unit: write {number}s for seconds or {number}m for minutes "
        "(units: d, h, m, s)"
    )


def test_a_bare_number_is_refused_on_the_command_line(cli: Cli) -> None:
    result = cli("refresh", "--window", "90")
    assert result.exit_code == 2
    flowed = " ".join(result.stderr.replace("│", " ").split())  # the usage box, unwrapped
    assert "'90' has no unit: write 90s for seconds or 90m for minutes" in flowed


def test_durations_format_back() -> None:
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(days=1, seconds=5)) == "1d5s"


def test_breaker_opens_at_exactly_the_failure_ratio() -> None:
    breaker = CircuitBreaker(window=10, min_calls=10, failure_ratio=0.8)
    for failed in [False, False] + [True] * 7:
        assert not breaker.record(failed=failed)
    assert breaker.record(failed=True)  # 8 of 10: exactly 80%
    assert breaker.reason == "8 of the last 10 calls to TikTok failed"


def test_breaker_forgets_calls_older_than_its_window() -> None:
    breaker = CircuitBreaker(window=20, min_calls=10, failure_ratio=0.8)
    for _ in range(30):
        breaker.record(failed=False)
    opened_at = next(n for n in range(1, 21) if breaker.record(failed=True))
    assert opened_at == 16  # the last 20 calls: 4 successes, 16 failures
