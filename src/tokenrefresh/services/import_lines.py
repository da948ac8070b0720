"""What one `accounts import` line carries for an app's provider: its token answer, the
envelope unwrapped (the fields at the top level), as the profile's `[answer]` names them.

Beside the answer's own fields a line may carry `label`, `issued_at` (ISO 8601) and the ISO
8601 alternatives to the answer's expiries, `access_expires_at` and `refresh_expires_at`.
The user's id is under the answer's `user_id` name (TikTok: `open_id`) or, for a provider
whose answer does not say whose token it is, under `user_id`. The other fields the answer
carries (`[answer] fields`, such as `token_type`) are accepted and ignored; any other field
is refused. Where a name means two things, the answer's meaning wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tokenrefresh.base.providers.profile import ExpiryUnit, Lifetimes, Profile

__all__ = [
    "ACCESS_EXPIRES_AT",
    "ISSUED_AT",
    "LABEL",
    "REFRESH_EXPIRES_AT",
    "USER_ID",
    "Expiry",
    "LineShape",
    "line_shape",
]

USER_ID = "user_id"  # where a line carries its user's id when the answer never does
LABEL = "label"
ISSUED_AT = "issued_at"
ACCESS_EXPIRES_AT = "access_expires_at"
REFRESH_EXPIRES_AT = "refresh_expires_at"


UNCUT = timedelta(days=100 * 366)  # beyond any lifetime a line may state


@dataclass(frozen=True)
class Expiry:
    """Where a line states a token's expiry: the answer's field (`name`, in `unit`, "" when
    the answer has none) or its ISO 8601 alternative (`absolute`, "" when the answer's
    field takes that name); a stated lifetime is cut to `ceiling`."""

    name: str
    unit: ExpiryUnit
    absolute: str
    ceiling: timedelta


@dataclass(frozen=True)
class LineShape:
    """The fields of one provider's import line.

    `refresh_token` "" (and `refresh_expiry` None): the provider refreshes with the access
    token (Instagram), so the line carries no refresh token and no refresh expiry, and the
    access token is stored in both slots (see `importer.py`). A `refresh_expiry` whose
    `name` is "": the answer states none (the RFC's), so it is `refresh_expires_at` or
    `max_refresh` after `issued_at`. `scope` "": the answer carries none, nor does a line.
    `issued_lifetime`: how long before its access expiry a token without `issued_at` was
    issued (a provider with a minimum age, such as Instagram's 24 h); None: issued now.
    """

    profile: str
    user_id: str
    access_token: str
    refresh_token: str
    access_expiry: Expiry
    refresh_expiry: Expiry | None
    scope: str
    issued_lifetime: timedelta | None
    lifetimes: Lifetimes
    own: frozenset[str]  # the import's own names a line may carry (label, issued_at, ...)
    known: frozenset[str]  # every name a line may carry


def line_shape(profile: Profile) -> LineShape:
    """The fields an import line for `profile` carries, and what each means."""
    answer, lifetimes = profile.answer, profile.lifetimes
    # TikTok's import keeps the rule it has always had (a lifetime stored as given, up to
    # 100 years), so scripts written against 0.2.0 see the same expiries; every other
    # provider's import cuts a lifetime to its profile's ceiling, as a refresh does.
    uncut = profile.name == "tiktok"
    # A profile's checks make the two agree: a refresh by the access token has no refresh token.
    refresh_token = "" if profile.refresh.presents == "access_token" else answer.refresh_token
    user_id = answer.user_id or USER_ID
    carried = {
        name
        for name in (
            answer.access_token,
            refresh_token,
            answer.access_expiry,
            answer.refresh_expiry,
            answer.scope,
            *answer.fields,
        )
        if name
    } - {user_id}
    own = {LABEL, ISSUED_AT, ACCESS_EXPIRES_AT}
    if refresh_token:
        own.add(REFRESH_EXPIRES_AT)
    own -= carried
    access_expiry = Expiry(
        answer.access_expiry,
        answer.access_expiry_unit,
        _if_free(ACCESS_EXPIRES_AT, own),
        UNCUT if uncut else lifetimes.max_access,
    )
    refresh_expiry = None
    if refresh_token:
        refresh_expiry = Expiry(
            answer.refresh_expiry,
            answer.refresh_expiry_unit,
            _if_free(REFRESH_EXPIRES_AT, own),
            UNCUT if uncut else lifetimes.max_refresh,
        )
    issued_lifetime = (
        lifetimes.access if profile.refresh.min_age > timedelta(0) and lifetimes.access else None
    )
    return LineShape(
        profile=profile.name,
        user_id=user_id,
        access_token=answer.access_token,
        refresh_token=refresh_token,
        access_expiry=access_expiry,
        refresh_expiry=refresh_expiry,
        scope=answer.scope,
        issued_lifetime=issued_lifetime,
        lifetimes=lifetimes,
        own=frozenset(own),
        known=frozenset({user_id, *carried, *own}),
    )


def _if_free(name: str, own: set[str]) -> str:
    return name if name in own else ""
