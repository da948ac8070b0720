"""Human output: short lines and tables, rich on a terminal and plain text when piped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenrefresh.base.durations import format_duration
from tokenrefresh.render.json import account_json
from tokenrefresh.render.terminal import Terminal
from tokenrefresh.render.values import TEXT_LIMIT, expiries, relative, shown, timestamp
from tokenrefresh.services.refresh.report import RECONNECT_HOW, REJECTED_WHY

if TYPE_CHECKING:
    from datetime import datetime

    from tokenrefresh.base.events.records import DeliveryReport
    from tokenrefresh.services.accounts import AccountDetails, ImportReport
    from tokenrefresh.services.cleanup import CleanupReport
    from tokenrefresh.services.keys import KeyCheckReport, RotateReport
    from tokenrefresh.services.refresh.report import RunReport
    from tokenrefresh.services.status import HealthCheck, StatusReport
    from tokenrefresh.storage.outbox import EventView, OutboxStats
    from tokenrefresh.storage.records import AccountView, RunView

__all__ = ["TextRenderer"]


class TextRenderer(Terminal):
    """What a person reads: each command's result in a few lines or a table."""

    def health(self, check: HealthCheck) -> None:
        """`status --check`: one line per problem, Nagios style."""
        if not check.problems:
            self.line("OK: tokenrefresh is healthy")
        for problem in check.problems:
            self.line(f"{problem.severity.upper()}: {problem.message}")

    def refresh(self, report: RunReport, *, quiet: bool) -> None:
        if report.dry_run:
            self._dry_run(report)
            self._unconfigured(report)
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
                f"  account {problem.account_id} ({shown(problem.open_id, TEXT_LIMIT)}): "
                f"{problem.result}: {shown(problem.detail, TEXT_LIMIT)}"
            )
        if report.problems_not_listed:
            self.line(f"  ... and {report.problems_not_listed} more (see `tokenrefresh status`)")
        if report.stop_reason:
            left = f"; {report.left_due} due account(s) left" if report.left_due else ""
            self.line(f"Stopped early: {shown(report.stop_message, TEXT_LIMIT)}{left}.")
        if report.counts["expired"]:
            self.line(
                f"Expired accounts: TikTok rejected their refresh token (their user "
                f"{REJECTED_WHY}); their user must reconnect {RECONNECT_HOW})."
            )
        if report.counts["lost"]:
            self.line(
                "Lost: TikTok rotated those tokens but the database did not store them; the next "
                "run will show whether their users must reconnect. Check the database first."
            )
        self._unconfigured(report)

    def _unconfigured(self, report: RunReport) -> None:
        for app, count in report.unconfigured_apps.items():
            self.line(
                f"Not refreshed: {count} active account(s) of app {shown(app, TEXT_LIMIT)}, "
                "which the configuration does not name (never refreshed or expired until it "
                "does again)."
            )

    def _dry_run(self, report: RunReport) -> None:
        self.table(
            f"Dry run: {len(report.planned)} account(s) would be refreshed",
            ["id", "open_id", "label", "access expires", "why"],
            [
                [
                    *_who(plan.account_id, plan.open_id, plan.label),
                    timestamp(plan.access_expires_at) or "",
                    plan.reason,
                ]
                for plan in report.planned
            ],
            empty="Dry run: nothing would be refreshed.",
        )

    def accounts(self, accounts: list[AccountView], now: datetime) -> None:
        # Accounts of several apps: a column says which (one app's table is as it was).
        several = len({account.app for account in accounts}) > 1
        self.table(
            f"{len(accounts)} account(s)",
            [
                *(["app"] if several else []),
                *["id", "open_id", "label", "status", "access expires", "refresh expires"],
                "last error",
            ],
            [
                [
                    *([shown(account.app, 64)] if several else []),
                    *_who(account.id, account.open_id, account.label),
                    account.status,
                    *(relative(moment, now) for moment in expiries(account)),
                    shown(account.last_error, 60),
                ]
                for account in accounts
            ],
            empty="No accounts.",
        )

    def events(self, events: list[EventView], now: datetime) -> None:
        self.table(
            f"{len(events)} event(s), newest first",
            ["id", "type", "account", "state", "recorded", "attempts", "last error"],
            [
                [
                    str(event.id),
                    event.type,
                    "" if event.account_id is None else str(event.account_id),
                    event.state,
                    relative(event.created_at, now),
                    str(event.attempts),
                    shown(event.last_error, 60),
                ]
                for event in events
            ],
            empty="No events.",
        )

    def delivered(self, report: DeliveryReport | None, outbox: OutboxStats, now: datetime) -> None:
        if report is None:
            self.line(
                "No delivery is configured (TOKENREFRESH_WEBHOOK_URL or "
                f"TOKENREFRESH_NOTIFY_URLS); {outbox.pending} event(s) pending."
            )
            return
        self.line(
            f"Events: {report.delivered} delivered, {report.failed} failed (kept for later), "
            f"{report.dropped} dropped; {outbox.pending} pending."
        )
        if outbox.pending and outbox.next_attempt_at is not None:
            self.line(
                f"Next attempt due at {timestamp(outbox.next_attempt_at)} "
                f"({relative(outbox.next_attempt_at, now)}); --now retries at once."
            )

    def account_details(self, details: AccountDetails, now: datetime) -> None:
        account = details.account
        fields = account_json(account)  # the same fields as the JSON, one per line
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            text = "" if value is None else shown(str(value), TEXT_LIMIT)
            self.line(f"{name.ljust(width)}  {text}")
        self.line()
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
                    shown(attempt.message, 60),
                ]
                for attempt in details.attempts
            ],
            empty="No refresh attempts recorded.",
        )

    def imported(self, report: ImportReport) -> None:
        if not (report.created or report.updated or report.unchanged):
            self.line("Nothing imported: the input has no account lines.")
            return
        unchanged = f", {report.unchanged} unchanged" if report.unchanged else ""
        self.line(
            f"Imported {report.created + report.updated} account(s): "
            f"{report.created} new, {report.updated} updated{unchanged}."
        )

    def status(self, report: StatusReport) -> None:
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
            + (relative(stats.soonest_access_expiry, now) if stats.soonest_access_expiry else "-")
        )
        self.line(
            "Soonest refresh token expiry: "
            + (relative(stats.soonest_refresh_expiry, now) if stats.soonest_refresh_expiry else "-")
        )
        if len(report.apps) > 1 or report.unconfigured_apps:
            self.line(
                "Accounts by app: "
                + ", ".join(f"{shown(app, 64)} {count}" for app, count in report.apps.items())
            )
        for app, count in report.unconfigured_apps.items():
            self.line(
                f"Not refreshed: {count} active account(s) of app {shown(app, 64)}, which the "
                "configuration does not name"
            )
        for note in report.notes:
            self.line(f"Note: {shown(note, TEXT_LIMIT)}")
        if report.configuration_error is not None:
            self.line(
                f"Configuration: cannot be read: {shown(report.configuration_error, TEXT_LIMIT)}"
            )
        if not report.keys_configured:
            self.line(
                "Keys: none configured (TOKENREFRESH_ENCRYPTION_KEYS): tokens cannot be read "
                "or refreshed"
            )
        self.line()
        for command in ("refresh", "cleanup"):
            self.line(f"Last {command}: {_run_line(report.last_runs.get(command), now)}")
            last_ok = report.last_successful_runs.get(command)
            if last_ok is not None and last_ok != report.last_runs.get(command):
                self.line(f"Last successful {command}: {_run_line(last_ok, now)}")
        if report.events.pending and not report.delivery_configured:
            self.line(
                f"Events recorded: {report.events.pending} (no webhook or notify target "
                "configured: kept as an audit trail)"
            )
        elif report.events.pending:
            oldest = report.events.oldest_pending_at
            self.line(
                f"Events not delivered yet: {report.events.pending}"
                + (f" (the oldest since {timestamp(oldest)})" if oldest else "")
            )
        if report.reconnect_count and not report.reconnect:  # --limit 0: the count alone
            self.line()
            self.line(f"{report.reconnect_count} account(s) need their user to reconnect.")
        elif report.reconnect_count:
            self.line()
            self.table(
                f"{report.reconnect_count} account(s) need their user to reconnect",
                ["id", "open_id", "label", "since", "reason"],
                [
                    [
                        *_who(account.id, account.open_id, account.label),
                        timestamp(account.updated_at) or "",
                        shown(account.last_error, 80),
                    ]
                    for account in report.reconnect
                ],
            )
            if report.reconnect_count > len(report.reconnect):
                self.line(f"... and {report.reconnect_count - len(report.reconnect)} more")

    def cleanup(self, report: CleanupReport, *, quiet: bool) -> None:
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
                f"  account {account.id} ({shown(account.open_id, TEXT_LIMIT)}): refresh token "
                f"expired at {timestamp(account.refresh_expires_at)}"
            )

    def key_check(self, report: KeyCheckReport) -> None:
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
        self.line(
            f"Re-encrypted the tokens of {report.rotated} account(s) with key #1"
            + (
                f"; {report.skipped} were refreshed meanwhile (already on key #1)"
                if report.skipped
                else ""
            )
            + "."
        )


def _who(account_id: int, open_id: str, label: str | None) -> list[str]:
    """The first three cells of every table of accounts: id, open_id, label."""
    return [str(account_id), open_id, label or ""]


def _run_line(run: RunView | None, now: datetime) -> str:
    if run is None:
        return "never"
    host = shown(run.host, TEXT_LIMIT)
    if run.finished_at is None:
        return f"started {relative(run.started_at, now)} on {host}, still running (or died)"
    counts = ", ".join(
        f"{shown(name, TEXT_LIMIT)} {count}" for name, count in sorted(run.counts.items())
    )
    return (
        f"{relative(run.finished_at, now)}: {run.outcome} (exit {run.exit_code})"
        + (f"; {counts}" if counts else "")
        + (f"; {shown(run.message, TEXT_LIMIT)}" if run.message else "")
    )
