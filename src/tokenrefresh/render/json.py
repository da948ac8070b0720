"""The stable JSON shapes (documented in the README) and the renderer that prints them.

Fields are only ever added, never renamed or removed, within a major version. Outside
text in them is scrubbed of every registered secret; `Terminal.json` escapes the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokenrefresh.render.terminal import Terminal
from tokenrefresh.render.values import expiries, outside, timestamp

if TYPE_CHECKING:
    from datetime import datetime

    from tokenrefresh.base.events.records import DeliveryReport
    from tokenrefresh.services.accounts import AccountDetails, ImportReport
    from tokenrefresh.services.cleanup import CleanupReport
    from tokenrefresh.services.keys import KeyCheckReport, RotateReport
    from tokenrefresh.services.refresh.report import AccountResult, RunReport
    from tokenrefresh.services.status import HealthCheck, StatusReport
    from tokenrefresh.storage.outbox import EventView, OutboxStats
    from tokenrefresh.storage.records import AccountView, AttemptView, RunView

__all__ = [
    "JsonRenderer",
    "account_json",
    "attempt_json",
    "cleanup_json",
    "event_json",
    "refresh_json",
    "result_json",
    "run_json",
    "status_json",
]


class JsonRenderer(Terminal):
    """`--json`: one document per command, never a token or ciphertext."""

    def refresh(self, report: RunReport, *, quiet: bool) -> None:
        self.json(refresh_json(report))

    def health(self, check: HealthCheck) -> None:
        self.json(
            {
                "status": check.severity,
                "problems": [
                    {"severity": problem.severity, "message": outside(problem.message)}
                    for problem in check.problems
                ],
            }
        )

    def accounts(self, accounts: list[AccountView], now: datetime) -> None:
        self.json({"accounts": [account_json(account) for account in accounts]})

    def events(self, events: list[EventView], now: datetime) -> None:
        self.json({"events": [event_json(event) for event in events]})

    def delivered(self, report: DeliveryReport | None, outbox: OutboxStats, now: datetime) -> None:
        self.json(
            {
                "configured": report is not None,
                "delivered": report.delivered if report else 0,
                "failed": report.failed if report else 0,
                "dropped": report.dropped if report else 0,
                "pending": outbox.pending,
                "next_attempt_at": timestamp(outbox.next_attempt_at if outbox.pending else None),
            }
        )

    def account_details(self, details: AccountDetails, now: datetime) -> None:
        self.json(
            {
                "account": account_json(details.account),
                "attempts": [attempt_json(attempt) for attempt in details.attempts],
            }
        )

    def imported(self, report: ImportReport) -> None:
        self.json(
            {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}
        )

    def status(self, report: StatusReport) -> None:
        self.json(status_json(report))

    def cleanup(self, report: CleanupReport, *, quiet: bool) -> None:
        self.json(cleanup_json(report))

    def key_check(self, report: KeyCheckReport) -> None:
        self.json(
            {
                "tokens_by_key": {str(k): v for k, v in report.tokens_by_key.items()},
                "undecryptable_accounts": report.undecryptable_accounts,
                "old_keys_in_use": report.old_keys_in_use,
            }
        )

    def rotated(self, report: RotateReport) -> None:
        self.json({"rotated": report.rotated, "skipped": report.skipped})


# ----------------------------------------------------------------------------- shapes


def account_json(account: AccountView) -> dict[str, Any]:
    access_expires_at, refresh_expires_at = expiries(account)
    return {
        "id": account.id,
        "app": account.app,
        "provider": account.provider,
        "user_id": outside(account.open_id),
        "open_id": outside(account.open_id),
        "label": outside(account.label),
        "status": account.status,
        "scope": outside(account.scope),
        "access_expires_at": timestamp(access_expires_at),
        "refresh_expires_at": timestamp(refresh_expires_at),
        "last_refreshed_at": timestamp(account.last_refreshed_at),
        "last_error": outside(account.last_error),
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
        "error_code": outside(attempt.error_code),
        "log_id": outside(attempt.log_id),
        "duration_ms": attempt.duration_ms,
        "message": outside(attempt.message),
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
        "host": outside(run.host),
        "pid": run.pid,
        "shard": run.shard,
        "message": outside(run.message),
    }


def result_json(result: AccountResult) -> dict[str, Any]:
    return {
        "account_id": result.account_id,
        "open_id": outside(result.open_id),
        "result": result.result,
        "detail": outside(result.detail),
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
                    "open_id": outside(plan.open_id),
                    "label": outside(plan.label),
                    "access_expires_at": timestamp(plan.access_expires_at),
                    "reason": outside(plan.reason),
                }
                for plan in report.planned
            ],
            **_unconfigured(report),
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
                "message": outside(report.stop_message),
                "left_due": report.left_due,
            }
            if report.stop_reason
            else None
        ),
        "problems": [result_json(problem) for problem in report.problems],
        "problems_not_listed": report.problems_not_listed,
        **_unconfigured(report),
    }


def _apps_json(report: StatusReport) -> dict[str, Any]:
    """`apps` and `unconfigured_apps` where any app but `tiktok` is in play, and
    `configuration_error` when the configuration cannot be read; a single TikTok app's
    document is what it was before apps (scripts compare its keys)."""
    document: dict[str, Any] = {}
    if report.several_apps:
        configured = report.configured_apps
        document["apps"] = {
            app: {
                "accounts": count,
                "configured": None if configured is None else app in configured,
            }
            for app, count in report.apps.items()
        }
        document["unconfigured_apps"] = dict(report.unconfigured_apps)
    if report.notes:
        document["notes"] = [outside(note) for note in report.notes]
    if report.configuration_error is not None:
        document["configuration_error"] = outside(report.configuration_error)
    return document


def _unconfigured(report: RunReport) -> dict[str, Any]:
    """`unconfigured_apps`, only when there are any: a run's document is otherwise what it
    was before apps (scripts compare its keys)."""
    if not report.unconfigured_apps:
        return {}
    return {"unconfigured_apps": dict(report.unconfigured_apps)}


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
        **_apps_json(report),
        "keys_configured": report.keys_configured,
        "events": {
            "pending": report.events.pending,
            "oldest_pending_at": timestamp(report.events.oldest_pending_at),
            "delivery_configured": report.delivery_configured,
        },
        "reconnect_needed": {
            "count": report.reconnect_count,
            "accounts": [
                {
                    "id": account.id,
                    "open_id": outside(account.open_id),
                    "label": outside(account.label),
                    "last_error": outside(account.last_error),
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
            {"account_id": account.id, "open_id": outside(account.open_id)}
            for account in report.expired
        ],
    }


def event_json(event: EventView) -> dict[str, Any]:
    """An outbox event: its delivery state and its payload (which never holds a token)."""
    import json

    return {
        "id": event.id,
        "event_id": event.event_id,
        "type": event.type,
        "account_id": event.account_id,
        "state": event.state,
        "created_at": timestamp(event.created_at),
        "attempts": event.attempts,
        "next_attempt_at": timestamp(event.next_attempt_at) if event.state == "pending" else None,
        "delivered_at": timestamp(event.delivered_at),
        "last_error": outside(event.last_error),
        "payload": json.loads(event.payload),
    }
