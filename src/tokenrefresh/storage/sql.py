"""SQL that several query modules share: the due rule (written once), the other account
conditions, the column sets that become records, and the guard on stored text."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, or_, select

from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.storage.models import Account, Attempt, Run
from tokenrefresh.storage.records import (
    AccountStatus,
    AccountView,
    AttemptView,
    Candidate,
    ClaimedAccount,
    Due,
    RunView,
    Shard,
)

__all__ = [
    "ACCOUNT_VIEW_COLUMNS",
    "ATTEMPT_COLUMNS",
    "CANDIDATE_COLUMNS",
    "CLAIM_COLUMNS",
    "IS_ACTIVE",
    "IS_FAILING",
    "RUN_COLUMNS",
    "account_view",
    "attempt_view",
    "claimed_account",
    "dead_token_conditions",
    "due_conditions",
    "due_where",
    "has_tokens",
    "past_expiry_conditions",
    "prunable_run_conditions",
    "run_view",
    "shard_condition",
    "shard_conditions",
    "stored_text",
    "without_tokens_conditions",
]

# A literal, not a bound parameter: PostgreSQL can then match the partial index
# `ix_accounts_due ... WHERE status = 'active'` even in a generic (prepared) plan.
IS_ACTIVE = Account.status == literal_column("'active'")
IS_FAILING = Account.consecutive_failures > literal_column("0")


Value = Any  # a value, or a bound parameter in a statement built once


def due_conditions(
    now: Value, horizon: Value, *, app: Value = None, issued_before: Value = None
) -> list[ColumnElement[bool]]:
    """The due rule, the one place it is written: active, the access token expiring by
    `horizon`, the refresh token valid at `now`, the next attempt's time come, a refresh
    token stored, and not refreshed since `now` (by this run or another); with `app`, of
    that app only; with `issued_before`, its tokens issued by then (a minimum age).

    Each is a value, or a bound parameter in a statement built once.
    """
    conditions = [
        IS_ACTIVE,
        Account.access_expires_at <= horizon,
        Account.refresh_expires_at > now,
        Account.next_attempt_at <= now,
        Account.refresh_token_ciphertext.is_not(None),
        or_(Account.last_refreshed_at.is_(None), Account.last_refreshed_at < now),
    ]
    if app is not None:
        conditions.append(Account.app == app)
    if issued_before is not None:
        conditions.append(
            or_(Account.tokens_issued_at.is_(None), Account.tokens_issued_at <= issued_before)
        )
    return conditions


def due_where(due: Due) -> list[ColumnElement[bool]]:
    """The due rule for this Due, its shard included, as plain values."""
    return [
        *due_conditions(due.now, due.horizon, app=due.app, issued_before=due.issued_before),
        *shard_conditions(due.shard),
    ]


def shard_condition(
    count: int | ColumnElement[int], index: int | ColumnElement[int]
) -> ColumnElement[bool]:
    """The accounts of shard `index` of `count`: id mod count = index."""
    return Account.id % count == index


def shard_conditions(shard: Shard | None) -> list[ColumnElement[bool]]:
    return [] if shard is None else [shard_condition(shard.count, shard.index)]


# Statuses whose users are not waited for: expired ones are counted on their own, revoked
# ones were let go on purpose (their tokens erased, their refresh token's expiry moot).
_NOT_WAITED_FOR = (AccountStatus.EXPIRED.value, AccountStatus.REVOKED.value)


def past_expiry_conditions(now: datetime) -> list[ColumnElement[bool]]:
    """Not marked expired yet, but the refresh token has run out (cleanup will mark it).
    Revoked accounts are not counted: nobody waits for them."""
    return [Account.status.not_in(_NOT_WAITED_FOR), Account.refresh_expires_at <= now]


def without_tokens_conditions(now: datetime) -> list[ColumnElement[bool]]:
    """Not expired, refresh token in date, but no token stored: nothing can refresh it.

    (Disjoint from the expired and the past-expiry accounts, so the three counts add up.)
    """
    return [
        Account.refresh_token_ciphertext.is_(None),
        Account.status.not_in(_NOT_WAITED_FOR),
        Account.refresh_expires_at > now,
    ]


def has_tokens() -> ColumnElement[bool]:
    return or_(
        Account.access_token_ciphertext.is_not(None),
        Account.refresh_token_ciphertext.is_not(None),
    )


def dead_token_conditions() -> list[ColumnElement[bool]]:
    """Expired accounts that still hold their (dead) tokens."""
    return [Account.status == AccountStatus.EXPIRED.value, has_tokens()]


def prunable_run_conditions(cutoff: datetime) -> list[ColumnElement[bool]]:
    """Finished runs started before `cutoff`, except the newest run of each command."""
    newest = select(func.max(Run.id)).group_by(Run.command)
    return [Run.started_at < cutoff, Run.finished_at.is_not(None), Run.id.not_in(newest)]


def stored_text(text: str | None, limit: int = 2000) -> str | None:
    """The last line of defence for text columns: no fragment of a registered secret, no
    control character or NUL (PostgreSQL refuses those), bounded to fit the column."""
    return None if text is None else safe_text(scrub(text[: limit * 2]), limit)


# ----------------------------------------------------------------------------- columns, records

ACCOUNT_VIEW_COLUMNS = (
    Account.id,
    Account.app,
    Account.open_id,
    Account.label,
    Account.status,
    Account.scope,
    Account.access_expires_at,
    Account.refresh_expires_at,
    Account.last_refreshed_at,
    Account.last_error,
    Account.consecutive_failures,
    Account.next_attempt_at,
    Account.created_at,
    Account.updated_at,
    Account.refresh_token_ciphertext.is_not(None).label("has_tokens"),
)
# In the order of Candidate's fields: rows become candidates positionally (it is faster).
CANDIDATE_COLUMNS = tuple(getattr(Account, column.name) for column in fields(Candidate))
CLAIM_COLUMNS = tuple(getattr(Account, column.name) for column in fields(ClaimedAccount))
ATTEMPT_COLUMNS = tuple(getattr(Attempt, column.name) for column in fields(AttemptView))
RUN_COLUMNS = tuple(getattr(Run, column.name) for column in fields(RunView))


def account_view(row: Any) -> AccountView:
    return AccountView(**{**row._mapping, "has_tokens": bool(row.has_tokens)})


def claimed_account(row: Any) -> ClaimedAccount:
    return ClaimedAccount(**row._mapping)


def attempt_view(row: Any) -> AttemptView:
    return AttemptView(**row._mapping)


def run_view(row: Any) -> RunView:
    return RunView(**{**row._mapping, "counts": json.loads(row.counts or "{}")})
