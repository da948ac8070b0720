"""Showing results: rich tables on a terminal, plain text when piped, stable JSON on request.

Nothing here decides anything; services return plain data and these functions show it.
No function here is ever given a token. Text from outside (TikTok, import files, the
database) is scrubbed of every registered secret and reaches a terminal only escaped:
`Output.line` and `Output.table` do it for all they print, `Output.json` escapes what
json.dumps leaves raw, and rich never interprets markup in it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from tokenrefresh.durations import format_duration
from tokenrefresh.logs import terminal_safe_json
from tokenrefresh.scrub import safe_text, scrub

if TYPE_CHECKING:  # types only: `status` need not import the refresher's HTTP stack
    from tokenrefresh.accounts import AccountDetails, ImportReport
    from tokenrefresh.cleanup import CleanupReport
    from tokenrefresh.keys import KeyCheckReport, RotateReport
    from tokenrefresh.refresh.report import AccountResult, RunReport
    from tokenrefresh.status import HealthProblem, StatusReport
    from tokenrefresh.storage.records import AccountView, AttemptView, RunView

__all__ = [
    "Output",
    "account_json",
    "refresh_json",
    "status_json",
]

CELL_LIMIT = 200  # characters of a table cell: enough to read, never a wall of text
TEXT_LIMIT = 2000  # characters of one outside text on a line of its own


def _outside(text: str | None) -> str | None:
    """Outside text for a JSON document: scrubbed; escaping is the encoder's job."""
    return scrub(text) if text else text


def _shown(text: str | None, limit: int | None = None) -> str:
    """Text as a terminal may show it: scrubbed, control characters escaped, bounded."""
    return safe_text(scrub(text), limit) if text else ""


# ----------------------------------------------------------------------------- JSON shapes


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z: `2026-11-28T12:00:00Z`."""
    if value is None:
        return None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def account_json(account: AccountView) -> dict[str, Any]:
    return {
        "id": account.id,
        "open_id": _outside(account.open_id),
        "label": _outside(account.label),
        "status": account.status,
        "scope": _outside(account.scope),
        "access_expires_at": timestamp(account.access_expires_at),
        "refresh_expires_at": timestamp(account.refresh_expires_at),
        "last_refreshed_at": timestamp(account.last_refreshed_at),
        "last_error": _outside(account.last_error),
        "consecutive_failures": account.consecutive_failures,
        "next_attempt_at": timestamp(account.next_attempt_at),
        "created_at": timestamp(account.created_at),
        "updated_at": timestamp(account.updated_at),
        "has_tokens": account.has_tokens,
    }


def attempt_json(attempt: AttemptView) -> dict[str, Any]:
    return {
        "attempted_at": timestamp(attempt.attempted_at),
        "run_id": attempt.run_id,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "error_code": _outside(attempt.error_code),
        "log_id": _outside(attempt.log_id),
        "duration_ms": attempt.duration_ms,
        "message": _outside(attempt.message),
    }


def run_json(run: RunView | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "command": run.command,
        "started_at": timestamp(run.started_at),
        "finished_at": timestamp(run.finished_at),
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "counts": run.counts,
        "host": _outside(run.host),
        "pid": run.pid,
        "shard": run.shard,
        "message": _outside(run.message),
    }


def _result_json(result: AccountResult) -> dict[str, Any]:
    return {
        "account_id": result.account_id,
        "open_id": _outside(result.open_id),
        "result": result.result,
        "detail": _outside(result.detail),
    }


def refresh_json(report: RunReport) -> dict[str, Any]:
    if report.dry_run:
        return {
            "command": "refresh",
            "dry_run": True,
            "started_at": timestamp(report.started_at),
            "count": len(report.planned),
            "would_refresh": [
                {
                    "account_id": plan.account_id,
                    "open_id": _outside(plan.open_id),
                    "label": _outside(plan.label),
                    "access_expires_at": timestamp(plan.access_expires_at),
                    "reason": _outside(plan.reason),
                }
                for plan in report.planned
            ],
        }
    return {
        "command": "refresh",
        "dry_run": False,
        "run_id": report.run_id,
        "started_at": timestamp(report.started_at),
        "finished_at": timestamp(report.finished_at),
        "duration_seconds": round(report.duration_seconds, 3),
        "outcome": report.outcome,
        "exit_code": report.exit_code,
        "counts": dict(report.counts),
        "stopped": (
            {
                "reason": report.stop_reason,
                "message": _outside(report.stop_message),
                "left_due": report.left_due,
            }
            if report.stop_reason
            else None
        ),
        "problems": [_result_json(problem) for problem in report.problems],
        "problems_not_listed": report.problems_not_listed,
    }


def status_json(report: StatusReport) -> dict[str, Any]:
    stats = report.stats
    return {
        "generated_at": timestamp(report.generated_at),
        "window_seconds": int(report.window.total_seconds()),
        "accounts": {**stats.by_status, "total": sum(stats.by_status.values())},
        "access_tokens": {
            "expiring_within_window": stats.expiring_within_window,
            "overdue": stats.overdue,
            "soonest_expiry": timestamp(stats.soonest_access_expiry),
        },
        "refresh_tokens": {
            "soonest_expiry": timestamp(stats.soonest_refresh_expiry),
            "past_expiry": stats.past_refresh_expiry,
            "missing": stats.without_tokens,
        },
        "failing": stats.failing,
        "reconnect_needed": {
            "count": report.reconnect_count,
            "accounts": [
                {
                    "id": account.id,
                    "open_id": _outside(account.open_id),
                    "label": _outside(account.label),
                    "last_error": _outside(account.last_error),
                    "updated_at": timestamp(account.updated_at),
                }
                for account in report.reconnect
            ],
        },
        "last_runs": {
            command: run_json(report.last_runs.get(command)) for command in ("refresh", "cleanup")
        },
        "last_successful_runs": {
            command: run_json(report.last_successful_runs.get(command))
            for command in ("refresh", "cleanup")
        },
    }


def cleanup_json(report: CleanupReport) -> dict[str, Any]:
    return {
        "command": "cleanup",
        "dry_run": report.dry_run,
        "run_id": report.run_id,
        "started_at": timestamp(report.started_at),
        "retention_seconds": int(report.retention.total_seconds()),
        "counts": report.counts,
        "expired": [
            {"account_id": account.id, "open_id": _outside(account.open_id)}
            for account in report.expired
        ],
    }


def refresh_summary(report: RunReport) -> str:
    """One line for a health-check ping or a log: counts, exit code, why it stopped."""
    counts = ", ".join(f"{name} {count}" for name, count in report.counts.items())
    text = f"{counts} (exit {report.exit_code})"
    if report.stop_message:
        text += f"; stopped: {_shown(report.stop_message, TEXT_LIMIT)}"
    return text


def cleanup_summary(report: CleanupReport) -> str:
    counts = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in report.counts.items())
    return f"{counts} (exit {report.exit_code})"


# ----------------------------------------------------------------------------- output


class Output:
    """Where results go: JSON, a rich table (terminal) or plain text (pipe)."""

    def __init__(self, *, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self._stream = stream or sys.stdout
        self._console: Any = None

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def json(self, data: Any) -> None:
        """Indented on a terminal; one compact line when piped (C-speed, for big documents)."""
        indent = 2 if self.is_terminal else None
        self._write(terminal_safe_json(data, indent=indent))

    def line(self, text: str = "") -> None:
        """One line, scrubbed and escaped: whatever outside text it holds is shown inert."""
        self._write(_shown(text))

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Every cell (and the title) scrubbed, escaped and bounded, then laid out."""
        title = _shown(title, CELL_LIMIT)
        columns = [_shown(column, CELL_LIMIT) for column in columns]
        cells = [[_shown(value, CELL_LIMIT) for value in row] for row in rows]
        if self.is_terminal:
            self._rich_table(title, columns, cells)
            return
        if title:
            self._write(f"{title}:")
        widths = [
            max([len(column), *(len(row[index]) for row in cells)])
            for index, column in enumerate(columns)
        ]
        self._write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in cells:
            self._write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def _rich_table(self, title: str, columns: list[str], cells: list[list[str]]) -> None:
        """Cells as rich Text, never markup: `[link=...]` or `[/]` in a label prints as is."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        if self._console is None:
            self._console = Console(file=self._stream, highlight=False, markup=False, emoji=False)
        table = Table(title=Text(title), title_justify="left")
        for column in columns:
            table.add_column(Text(column), overflow="fold")
        for row in cells:
            table.add_row(*(Text(value) for value in row))
        self._console.print(table)

    # --- per command --------------------------------------------------------------

    def health(self, problems: Sequence[HealthProblem]) -> None:
        """`status --check`: one line per problem, Nagios style; or JSON."""
        severity = (
            "critical"
            if any(problem.severity == "critical" for problem in problems)
            else "warning"
            if problems
            else "ok"
        )
        if self.as_json:
            self.json(
                {
                    "status": severity,
                    "problems": [
                        {"severity": problem.severity, "message": _outside(problem.message)}
                        for problem in problems
                    ],
                }
            )
            return
        if not problems:
            self.line("OK: tokenrefresh is healthy")
        for problem in problems:
            self.line(f"{problem.severity.upper()}: {problem.message}")

    def refresh(self, report: RunReport, *, quiet: bool) -> None:
        if self.as_json:
            self.json(refresh_json(report))
            return
        if report.dry_run:
            self._dry_run(report)
            return
        if quiet and report.exit_code == 0:
            return
        counts = report.counts
        attempted = sum(counts.values()) - counts["skipped"]
        if attempted == 0 and not report.stop_reason:
            self.line("Nothing to refresh: no account is due.")
        else:
            lost = f", {counts['lost']} lost" if counts["lost"] else ""
            self.line(
                f"Refreshed {counts['refreshed']} of {attempted} account(s): "
                f"{counts['expired']} expired, {counts['failed']} failed, "
                f"{counts['skipped']} skipped{lost} "
                f"(run {report.run_id}, {report.duration_seconds:.1f}s)."
            )
        for problem in report.problems:
            self.line(
                f"  account {problem.account_id} ({_shown(problem.open_id, TEXT_LIMIT)}): "
                f"{problem.result}: {_shown(problem.detail, TEXT_LIMIT)}"
            )
        if report.problems_not_listed:
            self.line(f"  ... and {report.problems_not_listed} more (see `tokenrefresh status`)")
        if report.stop_reason:
            left = f"; {report.left_due} due account(s) left" if report.left_due else ""
            self.line(f"Stopped early: {_shown(report.stop_message, TEXT_LIMIT)}{left}.")
        if report.counts["expired"]:
            self.line(
                "Expired accounts need their user to reconnect the TikTok account "
                "(then `tokenrefresh accounts import` the new tokens)."
            )
        if report.counts["lost"]:
            self.line(
                "Lost: TikTok rotated those tokens but the database did not store them; the next "
                "run will show whether their users must reconnect. Check the database first."
            )

    def _dry_run(self, report: RunReport) -> None:
        if not report.planned:
            self.line("Dry run: nothing would be refreshed.")
            return
        self.table(
            f"Dry run: {len(report.planned)} account(s) would be refreshed",
            ["id", "open_id", "label", "access expires", "why"],
            [
                [
                    str(plan.account_id),
                    plan.open_id,
                    plan.label or "",
                    timestamp(plan.access_expires_at) or "",
                    plan.reason,
                ]
                for plan in report.planned
            ],
        )

    def accounts(self, accounts: list[AccountView], now: datetime) -> None:
        if self.as_json:
            self.json({"accounts": [account_json(account) for account in accounts]})
            return
        if not accounts:
            self.line("No accounts.")
            return
        self.table(
            f"{len(accounts)} account(s)",
            ["id", "open_id", "label", "status", "access expires", "refresh expires", "last error"],
            [
                [
                    str(account.id),
                    account.open_id,
                    account.label or "",
                    account.status,
                    _relative(account.access_expires_at, now),
                    _relative(account.refresh_expires_at, now),
                    _shown(account.last_error, 60),
                ]
                for account in accounts
            ],
        )

    def account_details(self, details: AccountDetails, now: datetime) -> None:
        account = details.account
        if self.as_json:
            self.json(
                {
                    "account": account_json(account),
                    "attempts": [attempt_json(attempt) for attempt in details.attempts],
                }
            )
            return
        fields = account_json(account)
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            shown = "" if value is None else _shown(str(value), TEXT_LIMIT)
            self.line(f"{name.ljust(width)}  {shown}")
        self.line()
        if not details.attempts:
            self.line("No refresh attempts recorded.")
            return
        self.table(
            "Recent refresh attempts",
            ["when", "outcome", "http", "error", "log_id", "ms", "message"],
            [
                [
                    timestamp(attempt.attempted_at) or "",
                    attempt.outcome,
                    str(attempt.http_status or ""),
                    attempt.error_code or "",
                    attempt.log_id or "",
                    str(attempt.duration_ms),
                    _shown(attempt.message, 60),
                ]
                for attempt in details.attempts
            ],
        )

    def imported(self, report: ImportReport) -> None:
        if self.as_json:
            self.json(
                {
                    "created": report.created,
                    "updated": report.updated,
                    "unchanged": report.unchanged,
                }
            )
        else:
            unchanged = f", {report.unchanged} unchanged" if report.unchanged else ""
            self.line(
                f"Imported {report.created + report.updated} account(s): "
                f"{report.created} new, {report.updated} updated{unchanged}."
            )

    def status(self, report: StatusReport) -> None:
        if self.as_json:
            self.json(status_json(report))
            return
        stats = report.stats
        now = report.generated_at
        self.table(
            "Accounts",
            ["status", "count"],
            [[status, str(count)] for status, count in stats.by_status.items()],
        )
        self.line()
        self.line(
            f"Access tokens expiring within {format_duration(report.window)}: "
            f"{stats.expiring_within_window}"
        )
        self.line(f"Active accounts with an expired access token (overdue): {stats.overdue}")
        self.line(f"Active accounts whose last refresh failed: {stats.failing}")
        self.line(
            "Soonest access token expiry: "
            + (_relative(stats.soonest_access_expiry, now) if stats.soonest_access_expiry else "-")
        )
        self.line(
            "Soonest refresh token expiry: "
            + (
                _relative(stats.soonest_refresh_expiry, now)
                if stats.soonest_refresh_expiry
                else "-"
            )
        )
        self.line()
        for command in ("refresh", "cleanup"):
            self.line(f"Last {command}: {_run_line(report.last_runs.get(command), now)}")
            last_ok = report.last_successful_runs.get(command)
            if last_ok is not None and last_ok != report.last_runs.get(command):
                self.line(f"Last successful {command}: {_run_line(last_ok, now)}")
        if report.reconnect_count:
            self.line()
            self.table(
                f"{report.reconnect_count} account(s) need their user to reconnect",
                ["id", "open_id", "label", "since", "reason"],
                [
                    [
                        str(account.id),
                        account.open_id,
                        account.label or "",
                        timestamp(account.updated_at) or "",
                        _shown(account.last_error, 80),
                    ]
                    for account in report.reconnect
                ],
            )
            if report.reconnect_count > len(report.reconnect):
                self.line(f"... and {report.reconnect_count - len(report.reconnect)} more")

    def cleanup(self, report: CleanupReport, *, quiet: bool) -> None:
        if self.as_json:
            self.json(cleanup_json(report))
            return
        if quiet:
            return
        counts = report.counts
        verb = "Would" if report.dry_run else "Cleanup"
        if report.dry_run:
            self.line(
                f"{verb} expire {counts['expired']} account(s), erase the tokens of "
                f"{counts['tokens_erased']}, prune {counts['attempts_pruned']} attempt(s) and "
                f"{counts['runs_pruned']} run(s) older than {format_duration(report.retention)}."
            )
        else:
            self.line(
                f"Cleanup: expired {counts['expired']} account(s), erased the tokens of "
                f"{counts['tokens_erased']}, pruned {counts['attempts_pruned']} attempt(s) and "
                f"{counts['runs_pruned']} run(s) older than {format_duration(report.retention)}."
            )
        for account in report.expired:
            self.line(
                f"  account {account.id} ({_shown(account.open_id, TEXT_LIMIT)}): refresh token "
                f"expired at {timestamp(account.refresh_expires_at)}"
            )

    def key_check(self, report: KeyCheckReport) -> None:
        if self.as_json:
            self.json(
                {
                    "tokens_by_key": {str(k): v for k, v in report.tokens_by_key.items()},
                    "undecryptable_accounts": report.undecryptable_accounts,
                    "old_keys_in_use": report.old_keys_in_use,
                }
            )
            return
        for position, count in report.tokens_by_key.items():
            role = "encrypts new tokens" if position == 1 else "decrypts only"
            self.line(f"key #{position} ({role}): {count} stored token(s)")
        if report.undecryptable_accounts:
            listed = ", ".join(str(account) for account in report.undecryptable_accounts[:20])
            self.line(f"No key decrypts the tokens of account(s): {listed}")
        elif report.key_count > 1 and not report.old_keys_in_use:
            self.line("No token needs the older keys: they can be removed.")
        elif report.old_keys_in_use:
            self.line("Some tokens still need older keys: run `tokenrefresh keys rotate`.")

    def rotated(self, report: RotateReport) -> None:
        if self.as_json:
            self.json({"rotated": report.rotated, "skipped": report.skipped})
        else:
            self.line(
                f"Re-encrypted the tokens of {report.rotated} account(s) with key #1"
                + (
                    f"; {report.skipped} were refreshed meanwhile (already on key #1)"
                    if report.skipped
                    else ""
                )
                + "."
            )


def _run_line(run: RunView | None, now: datetime) -> str:
    if run is None:
        return "never"
    host = _shown(run.host, TEXT_LIMIT)
    if run.finished_at is None:
        return f"started {_relative(run.started_at, now)} on {host}, still running (or died)"
    counts = ", ".join(
        f"{_shown(name, TEXT_LIMIT)} {count}" for name, count in sorted(run.counts.items())
    )
    return (
        f"{_relative(run.finished_at, now)}: {run.outcome} (exit {run.exit_code})"
        + (f"; {counts}" if counts else "")
        + (f"; {_shown(run.message, TEXT_LIMIT)}" if run.message else "")
    )


def _relative(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = moment - now
    seconds = int(delta.total_seconds())
    if abs(seconds) < 1:
        return f"now ({timestamp(moment)})"
    text = format_duration(timedelta(seconds=abs(seconds)))
    text = _coarse(text)
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _coarse(text: str) -> str:
    """`2d3h4m5s` -> `2d3h`: the two largest units are enough to read."""
    parts: list[str] = []
    number = ""
    for char in text:
        number += char
        if char.isalpha():
            parts.append(number)
            number = ""
    return "".join(parts[:2])
