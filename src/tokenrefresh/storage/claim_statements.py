"""The statements that claim an account and end its claim, built once per process.

SQLAlchemy then reuses their compiled form instead of rebuilding and re-keying a statement
for every account a run refreshes. `claims.py` runs them. Every write that ends a claim
is a compare-and-set on the token generation the claim read (`b_generation`); marking an
account expired or failed also checks that the lease is still the claimer's (`b_owner`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Executable,
    Text,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from tokenrefresh.storage.models import Account, Attempt, SpentRefreshToken, UTCDateTime
from tokenrefresh.storage.records import AccountStatus, ClaimedAccount, Due, NewTokens
from tokenrefresh.storage.sql import CLAIM_COLUMNS, due_conditions, shard_condition, stored_text

__all__ = [
    "INSERT_ATTEMPT",
    "MARK_EXPIRED",
    "RECORD_FAILURE",
    "RELEASE",
    "SAVE_GRANT",
    "claim_statement",
    "due_parameters",
    "grant_parameters",
    "spent_insert",
    "takeover_statement",
]


def grant_parameters(
    account: ClaimedAccount,
    tokens: NewTokens,
    status: AccountStatus,
    error: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of SAVE_GRANT for this claimed account and its new pair."""
    return {
        "b_id": account.id,
        "b_generation": account.token_generation,
        # None keeps the stored value (COALESCE): never a token overwritten with nothing.
        "b_access": tokens.access_token_ciphertext,
        "b_access_expires": tokens.access_expires_at,
        "b_refresh": tokens.refresh_token_ciphertext,
        "b_refresh_expires": tokens.refresh_expires_at,
        "b_scope": tokens.scope,
        "b_status": status.value,
        "b_error": stored_text(error),
        "b_now": now,
    }


_NOW = bindparam("b_now", type_=UTCDateTime())
_SAME_GENERATION = and_(
    Account.id == bindparam("b_id"), Account.token_generation == bindparam("b_generation")
)
_LEASE_IS_OURS = Account.lease_owner == bindparam("b_owner")
_NO_LEASE = {"lease_owner": None, "lease_expires_at": None}
_REFRESH_PARAM = bindparam("b_refresh", type_=Text())
SAVE_GRANT = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(
        access_token_ciphertext=func.coalesce(
            bindparam("b_access", type_=Text()), Account.access_token_ciphertext
        ),
        access_expires_at=bindparam("b_access_expires", type_=UTCDateTime()),
        refresh_token_ciphertext=func.coalesce(_REFRESH_PARAM, Account.refresh_token_ciphertext),
        refresh_expires_at=func.coalesce(
            bindparam("b_refresh_expires", type_=UTCDateTime()), Account.refresh_expires_at
        ),
        # A token from TikTok was never in an import file: nothing to recognise it by.
        refresh_token_fingerprint=case(
            (_REFRESH_PARAM.is_(None), Account.refresh_token_fingerprint), else_=None
        ),
        tokens_issued_at=_NOW,
        scope=func.coalesce(bindparam("b_scope", type_=Text()), Account.scope),
        status=bindparam("b_status"),
        token_generation=Account.token_generation + 1,
        last_refreshed_at=_NOW,
        last_error=bindparam("b_error"),
        consecutive_failures=0,
        next_attempt_at=_NOW,
        updated_at=_NOW,
        **_NO_LEASE,
    )
)
MARK_EXPIRED = (
    update(Account)
    .where(_SAME_GENERATION, _LEASE_IS_OURS)
    .values(
        status=AccountStatus.EXPIRED.value,
        last_error=bindparam("b_error"),
        updated_at=_NOW,
        **_NO_LEASE,
    )
)
RECORD_FAILURE = (
    update(Account)
    .where(_SAME_GENERATION, _LEASE_IS_OURS)
    .values(
        last_error=bindparam("b_error"),
        consecutive_failures=Account.consecutive_failures + 1,
        next_attempt_at=bindparam("b_next_attempt", type_=UTCDateTime()),
        updated_at=_NOW,
        **_NO_LEASE,
    )
)
RELEASE = update(Account).where(Account.id == bindparam("b_id"), _LEASE_IS_OURS).values(**_NO_LEASE)
INSERT_ATTEMPT = insert(Attempt)
_SPENT_INSERTS: dict[str, Executable] = {}
_CLAIMS: dict[tuple[str | bool, ...], Executable] = {}


def spent_insert(dialect: str) -> Executable:
    """INSERT the account's imported fingerprint into spent_refresh_tokens, if it has one;
    a fingerprint already there is left alone."""
    if dialect not in _SPENT_INSERTS:
        source = select(Account.refresh_token_fingerprint, Account.id, _NOW).where(
            _SAME_GENERATION, Account.refresh_token_fingerprint.is_not(None)
        )
        columns = ["fingerprint", "account_id", "spent_at"]
        statement: Executable
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            statement = (
                postgresql_insert(SpentRefreshToken)
                .from_select(columns, source)
                .on_conflict_do_nothing(index_elements=["fingerprint"])
            )
        else:
            statement = (
                insert(SpentRefreshToken).from_select(columns, source).prefix_with("OR IGNORE")
            )
        _SPENT_INSERTS[dialect] = statement
    return _SPENT_INSERTS[dialect]


def claim_statement(due: Due | None, skip_locked: bool) -> Executable:
    """Take the lease of one account if it is free (and, with `due`, still due): an UPDATE
    returning the claim columns, or nothing. PostgreSQL picks the row `FOR UPDATE SKIP
    LOCKED` in a CTE first, so a claimer never waits for another's short transaction."""
    key = ("claim", *_due_shape(due), skip_locked)
    if key not in _CLAIMS:
        free = or_(Account.lease_expires_at.is_(None), Account.lease_expires_at <= _NOW)
        _CLAIMS[key] = _leasing(_claim_conditions(due, free), skip_locked)
    return _CLAIMS[key]


def takeover_statement(due: Due | None, skip_locked: bool) -> Executable:
    """Take over a lease whose holder is known to be gone (compare-and-set on the holder)."""
    key = ("takeover", *_due_shape(due), skip_locked)
    if key not in _CLAIMS:
        stale = Account.lease_owner == bindparam("b_stale")
        _CLAIMS[key] = _leasing(_claim_conditions(due, stale), skip_locked)
    return _CLAIMS[key]


def _due_shape(due: Due | None) -> tuple[bool, bool, bool, bool]:
    """Which parts of the due rule a claim re-checks (each shape one statement)."""
    if due is None:
        return (False, False, False, False)
    return (True, due.shard is not None, due.app is not None, due.issued_before is not None)


def _claim_conditions(due: Due | None, lease: Any) -> list[Any]:
    conditions: list[Any] = [Account.id == bindparam("b_id"), lease]
    _, sharded, by_app, aged = _due_shape(due)
    if due is not None:
        conditions += due_conditions(
            bindparam("b_due_now", type_=UTCDateTime()),
            bindparam("b_horizon", type_=UTCDateTime()),
            app=bindparam("b_app") if by_app else None,
            issued_before=bindparam("b_issued_before", type_=UTCDateTime()) if aged else None,
        )
    if sharded:
        conditions.append(shard_condition(bindparam("b_shard_count"), bindparam("b_shard_index")))
    return conditions


def _leasing(conditions: list[Any], skip_locked: bool) -> Executable:
    values = {
        "lease_owner": bindparam("b_owner"),
        "lease_expires_at": bindparam("b_until", type_=UTCDateTime()),
    }
    if skip_locked:
        target = select(Account.id).where(*conditions).with_for_update(skip_locked=True).cte()
        statement = update(Account).where(Account.id == target.c.id)
    else:
        statement = update(Account).where(*conditions)
    return statement.values(values).returning(*CLAIM_COLUMNS)


def due_parameters(due: Due) -> dict[str, Any]:
    parameters: dict[str, Any] = {"b_horizon": due.horizon, "b_due_now": due.now}
    if due.shard is not None:
        parameters.update(b_shard_count=due.shard.count, b_shard_index=due.shard.index)
    if due.app is not None:
        parameters["b_app"] = due.app
    if due.issued_before is not None:
        parameters["b_issued_before"] = due.issued_before
    return parameters
