"""Operating tokenrefresh: health checks, metrics files, pings, JSON logs, progress."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert, update

from conftest import Cli, process_env
from helpers import counts, runs, serving
from standin import Reply, TikTokStandIn, tiktok_error
from tokenrefresh.storage.models import Account, Run

PING_PATH = "/ping/5f0c3a51-1f7e-4d16-9a8e-a0d9c0ffee00"


@dataclass
class PingReceiver:
    """Where to send health-check pings (a loopback server), and what it received: (path,
    body)."""

    url: str = ""
    received: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def pings() -> Iterator[PingReceiver]:
    receiver = PingReceiver()

    def record(request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", 0))
        receiver.received.append((request.path, request.rfile.read(length).decode()))
        request.send_response(200)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"OK")

    with serving(record) as base_url:
        receiver.url = base_url + PING_PATH
        yield receiver


def metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# ----------------------------------------------------------------------------- status --check


def test_check_is_critical_before_any_refresh(cli: Cli) -> None:
    result = cli("status", "--check")
    assert result.exit_code == 2
    assert result.stdout == "CRITICAL: no refresh run has succeeded yet\n"


def test_check_is_ok_after_a_good_refresh(cli: Cli, add_accounts: Callable[..., list]) -> None:
    add_accounts(2)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    result = cli("status", "--check")
    assert result.exit_code == 0
    assert result.stdout == "OK: tokenrefresh is healthy\n"
    assert cli("status", "--check", "--json").json() == {"status": "ok", "problems": []}


def test_check_warns_about_reconnects_and_criticises_overdue_and_stale(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list]
) -> None:
    add_accounts(3)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    with engine.begin() as connection:
        connection.execute(
            update(Account).where(Account.open_id == "user0").values(status="expired")
        )
    warning = cli("status", "--check")
    assert warning.exit_code == 1
    assert warning.stdout == "WARNING: 1 account(s) need their user to reconnect\n"

    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            update(Account)
            .where(Account.open_id == "user1")
            .values(access_expires_at=now - timedelta(minutes=1))
        )
        connection.execute(update(Run).values(finished_at=now - timedelta(hours=3)))
    critical = cli("status", "--check", "--max-age", "2h")
    assert critical.exit_code == 2
    lines = critical.stdout.splitlines()
    assert lines[0].startswith("CRITICAL: the last successful refresh finished at ")
    assert lines[0].endswith(", more than 2h ago")
    assert lines[1:] == [
        "CRITICAL: 1 active account(s) have an expired access token",
        "WARNING: 1 account(s) need their user to reconnect",
    ]
    report = cli("status", "--check", "--max-age", "2h", "--json").json()
    assert report["status"] == "critical"
    assert [problem["severity"] for problem in report["problems"]] == [
        "critical",
        "critical",
        "warning",
    ]
    assert cli("status", "--check", "--max-age", "4h").exit_code == 2  # still overdue


def test_check_is_critical_when_overdue_accounts_are_the_only_problem(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list]
) -> None:
    add_accounts(2)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0  # recent, successful
    with engine.begin() as connection:  # its access token ran out; the refresh token is fine
        connection.execute(
            update(Account)
            .where(Account.open_id == "user1")
            .values(access_expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    result = cli("status", "--check")
    assert result.exit_code == 2
    assert result.stdout == "CRITICAL: 1 active account(s) have an expired access token\n"
    assert cli("status", "--check", "--json").json() == {
        "status": "critical",
        "problems": [
            {"severity": "critical", "message": "1 active account(s) have an expired access token"}
        ],
    }


def test_a_run_whose_only_problem_is_users_to_reconnect_counts_as_successful(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(3)
    standin.script(tiktok_error("invalid_grant"), open_id="user2")
    assert cli("refresh", "--window", "3h", "-q").exit_code == 1  # a user must reconnect
    [run] = runs(engine)
    assert (run["outcome"], run["exit_code"]) == ("failures", 1)

    check = cli("status", "--check")
    assert check.exit_code == 1  # a warning, never critical
    assert check.stdout == "WARNING: 1 account(s) need their user to reconnect\n"
    report = cli("status", "--json").json()
    assert report["last_successful_runs"]["refresh"] == report["last_runs"]["refresh"]
    assert report["last_successful_runs"]["refresh"]["id"] == run["id"]
    assert report["last_successful_runs"]["refresh"]["counts"] == counts(refreshed=2, expired=1)
    assert "Last successful refresh" not in cli("status").stdout  # the last run was one


def test_a_run_with_a_transient_failure_is_not_a_successful_run(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(3)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    [good] = runs(engine)
    with engine.begin() as connection:  # all due again
        connection.execute(
            update(Account).values(access_expires_at=datetime.now(UTC) + timedelta(minutes=5))
        )
    standin.script(tiktok_error("invalid_grant"), open_id="user2")
    standin.script(*[Reply(503)] * 3, open_id="user1")  # no verdict: tried again later
    result = cli("refresh", "--window", "3h", "-q", "--http-timeout", "0.3")
    assert result.exit_code == 1
    report = cli("status", "--json").json()
    assert report["last_runs"]["refresh"]["counts"] == counts(refreshed=1, expired=1, failed=1)
    assert report["last_successful_runs"]["refresh"]["id"] == good["id"]
    assert "Last successful refresh: " in cli("status").stdout


def test_the_last_successful_run_is_found_behind_many_runs_with_failures(
    cli: Cli, engine: Engine
) -> None:
    now = datetime.now(UTC)

    def run(minutes_ago: int, **results: int) -> dict[str, object]:
        started = now - timedelta(minutes=minutes_ago)
        return {
            "command": "refresh",
            "host": "h",
            "pid": 1,
            "started_at": started,
            "finished_at": started,
            "outcome": "failures",
            "exit_code": 1,
            "counts": json.dumps(counts(**results), sort_keys=True),
        }

    with engine.begin() as connection:  # more runs than one page of the search
        connection.execute(insert(Run), [run(1300, refreshed=5, expired=1)])
        connection.execute(insert(Run), [run(1200 - n, refreshed=5, failed=1) for n in range(1200)])
        connection.execute(insert(Run), [run(0, refreshed=4, expired=1, lost=1)])
    report = cli("status", "--json").json()
    success = report["last_successful_runs"]["refresh"]
    assert success["counts"] == counts(refreshed=5, expired=1)
    assert success["id"] == report["last_runs"]["refresh"]["id"] - 1201


# ----------------------------------------------------------------------------- metrics


def test_refresh_writes_a_prometheus_metrics_file(
    cli: Cli, tmp_path: Path, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(3)
    standin.script(tiktok_error("invalid_grant"), open_id="user2")
    path = tmp_path / "textfile" / "tokenrefresh.prom"
    path.parent.mkdir()
    result = cli("refresh", "--window", "3h", "-q", "--metrics-file", str(path))
    assert result.exit_code == 1
    samples = metrics(path)
    assert samples[("tokenrefresh_accounts", (("status", "active"),))] == 2
    assert samples[("tokenrefresh_accounts", (("status", "expired"),))] == 1
    assert samples[("tokenrefresh_last_run_exit_code", (("command", "refresh"),))] == 1
    runs = (("command", "refresh"), ("result", "refreshed"))
    assert samples[("tokenrefresh_last_run_accounts", runs)] == 2
    assert (
        samples[("tokenrefresh_last_run_accounts", (("command", "refresh"), ("result", "expired")))]
        == 1
    )
    assert samples[("tokenrefresh_access_tokens_overdue", ())] == 0
    # Its only problem is a user to reconnect: a successful run all the same.
    assert ("tokenrefresh_last_success_timestamp_seconds", (("command", "refresh"),)) in samples
    started = samples[("tokenrefresh_last_run_timestamp_seconds", (("command", "refresh"),))]
    assert abs(started - datetime.now(UTC).timestamp()) < 600
    assert [p.name for p in path.parent.iterdir()] == ["tokenrefresh.prom"]  # no temp file left

    assert cli("refresh", "--window", "3h", "-q", "--metrics-file", str(path)).exit_code == 0
    samples = metrics(path)
    assert samples[("tokenrefresh_last_run_exit_code", (("command", "refresh"),))] == 0
    assert ("tokenrefresh_last_success_timestamp_seconds", (("command", "refresh"),)) in samples


def test_cleanup_metrics_hold_only_cleanup_series(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "cleanup.prom"
    assert cli("cleanup", "-q", "--metrics-file", str(path)).exit_code == 0
    samples = metrics(path)
    assert samples[("tokenrefresh_last_run_exit_code", (("command", "cleanup"),))] == 0
    # Two files in one textfile directory must never repeat a series.
    assert not any(name == "tokenrefresh_accounts" for name, _ in samples)
    assert all(dict(labels).get("command", "cleanup") == "cleanup" for _, labels in samples)


def test_metrics_record_a_rejected_configuration(
    cli: Cli, tmp_path: Path, add_accounts: Callable[..., list]
) -> None:
    add_accounts(1)
    path = tmp_path / "tokenrefresh.prom"
    result = cli(
        "refresh",
        "--window",
        "3h",
        "--metrics-file",
        str(path),
        env={"TIKTOK_CLIENT_SECRET": "wrong"},
    )
    assert result.exit_code == 3
    assert metrics(path)[("tokenrefresh_last_run_exit_code", (("command", "refresh"),))] == 3


def test_a_metrics_file_that_cannot_be_written_does_not_fail_the_run(
    cli: Cli, tmp_path: Path, add_accounts: Callable[..., list]
) -> None:
    add_accounts(1)
    result = cli(
        "refresh", "--window", "3h", "--metrics-file", str(tmp_path / "missing" / "m.prom")
    )
    assert result.exit_code == 0
    assert "error: could not write the metrics file" in result.stderr


# ----------------------------------------------------------------------------- pings


def test_refresh_pings_start_and_success(
    cli: Cli, pings: PingReceiver, add_accounts: Callable[..., list]
) -> None:
    add_accounts(2)
    result = cli("refresh", "--window", "3h", "-q", env={"TOKENREFRESH_PING_URL": pings.url})
    assert result.exit_code == 0
    assert [path for path, _ in pings.received] == [f"{PING_PATH}/start", PING_PATH]
    assert "refreshed 2, expired 0, failed 0, skipped 0, lost 0 (exit 0)" in pings.received[1][1]
    assert PING_PATH not in result.stdout + result.stderr


def test_a_failed_run_pings_fail_and_one_with_only_users_to_reconnect_success(
    cli: Cli, pings: PingReceiver, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(2)
    # Only a user to reconnect: exit 1, but a successful run, as for `status` (issue 18).
    standin.script(tiktok_error("invalid_grant"), open_id="user0")
    result = cli("refresh", "--window", "3h", "-q", env={"TOKENREFRESH_PING_URL": pings.url})
    assert result.exit_code == 1
    assert [path for path, _ in pings.received] == [f"{PING_PATH}/start", PING_PATH]
    assert "refreshed 1, expired 1, failed 0, skipped 0, lost 0 (exit 1)" in pings.received[1][1]
    # A transient failure besides: no verdict on the account, a failed run.
    add_accounts(1, prefix="flaky")
    standin.script(tiktok_error("invalid_grant"), open_id="user1")
    standin.script(*[Reply(503)] * 3, open_id="flaky0")
    pings.received.clear()
    result = cli("refresh", "--window", "3h", "-q", env={"TOKENREFRESH_PING_URL": pings.url})
    assert result.exit_code == 1
    assert [path for path, _ in pings.received] == [f"{PING_PATH}/start", f"{PING_PATH}/fail"]
    assert "refreshed 0, expired 1, failed 1, skipped 0, lost 0 (exit 1)" in pings.received[1][1]
    # The app's credentials rejected: the run is a failure, and says why.
    add_accounts(1, prefix="other")
    pings.received.clear()
    rejected = cli(
        "refresh",
        "--window",
        "3h",
        env={"TOKENREFRESH_PING_URL": pings.url, "TIKTOK_CLIENT_SECRET": "wrong"},
    )
    assert rejected.exit_code == 3
    assert [path for path, _ in pings.received] == [f"{PING_PATH}/start", f"{PING_PATH}/fail"]
    assert "rejected the app's credentials" in pings.received[1][1]


def test_an_unreachable_ping_never_fails_the_run(
    cli: Cli, add_accounts: Callable[..., list]
) -> None:
    add_accounts(1)
    url = "http://127.0.0.1:9/ping/never-shown"
    result = cli("refresh", "--window", "3h", env={"TOKENREFRESH_PING_URL": url})
    assert result.exit_code == 0
    assert "Refreshed 1 of 1 account(s)" in result.stdout
    assert (
        "the health-check ping failed (connection refused); the run is not affected"
        in result.stderr
    )
    assert "never-shown" not in result.stderr + result.stdout


def test_cleanup_has_a_ping_of_its_own(cli: Cli, pings: PingReceiver) -> None:
    result = cli(
        "cleanup",
        "-q",
        env={
            "TOKENREFRESH_CLEANUP_PING_URL": pings.url,
            "TOKENREFRESH_PING_URL": "http://127.0.0.1:9/x",
        },
    )
    assert result.exit_code == 0
    assert [path for path, _ in pings.received] == [f"{PING_PATH}/start", PING_PATH]


# ----------------------------------------------------------------------------- logs, progress


def test_json_logs_carry_one_run_id(
    cli: Cli, add_accounts: Callable[..., list], standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(3)
    standin.script(tiktok_error("invalid_grant"), open_id="user1")
    result = cli("refresh", "--window", "3h", "-v", "--log-format", "json")
    assert result.exit_code == 1
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(entries) >= 4
    # The run's number, as `status` and `accounts show` name it, once the run is recorded.
    [run] = runs(engine)
    assert {entry["run_id"] for entry in entries} - {None} == {run["id"]}
    assert entries[-1]["run_id"] == run["id"]
    assert len({entry["invocation_id"] for entry in entries}) == 1
    assert {entry["level"] for entry in entries} <= {"info", "warning"}
    assert any("account 2 (user1): expired" in entry["message"] for entry in entries)
    assert all(
        set(entry) == {"time", "level", "logger", "run_id", "invocation_id", "message"}
        for entry in entries
    )


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(
    env: dict[str, str], add_accounts: Callable[..., list], cli: Cli
) -> None:
    add_accounts(3)
    piped = cli("refresh", "--window", "3h", "--account-id", "1")
    assert "refreshing" not in piped.stderr

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", "refresh", "--window", "3h"],
        env={**process_env(env), "TERM": "xterm", "COLUMNS": "100"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "refreshing" in text  # the bar was drawn on the terminal
    assert "Refreshed 3 of 3 account(s)" in text


def test_a_ping_body_never_carries_a_secret_or_a_control_character(pings: PingReceiver) -> None:
    from tokenrefresh.base.scrub import MASK, register_secret
    from tokenrefresh.base.settings import Secret
    from tokenrefresh.services.monitoring import Pinger

    secret = "ping-body-secret-0123456789"
    register_secret(secret)
    Pinger(Secret(pings.url)).finish(False, f"stopped: TikTok said {secret.upper()}\x1b[2J")
    [(path, body)] = pings.received
    assert path == PING_PATH + "/fail"
    assert body == f"stopped: TikTok said {MASK}\\x1b[2J"
