"""Contradictions in a profile whose every key is well formed: each would make the client
send a call that cannot work, or keep a promise it cannot keep (a token refreshed on every
run, an account marked for reconnect and retried at once)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.providers.profile import Profile

__all__ = ["check_profile"]


def check_profile(profile: Profile) -> str | None:
    """The first contradiction, naming its key(s); None if there is none."""
    return next(_contradictions(profile), None)


def _contradictions(profile: Profile) -> Iterator[str]:
    yield from _request(profile)
    yield from _tokens(profile)
    yield from _timing(profile)
    yield from _errors(profile)
    yield from _consent(profile)


def _request(profile: Profile) -> Iterator[str]:
    refresh = profile.refresh
    if not profile.template and profile.urls.token is None:
        yield "[urls] token is missing: a profile that apps use needs its token URL"
    if (refresh.method == "GET") != (refresh.body == "query"):
        yield (
            f"[refresh] body: a {refresh.method} sends {refresh.body!r}; a GET sends its "
            'parameters in the query string (body = "query"), a POST in a form or JSON body'
        )
    if refresh.token_name in refresh.params or refresh.token_name == profile.client.secret_name:
        yield f"[refresh] token_name: {refresh.token_name!r} is also another parameter's name"


def _tokens(profile: Profile) -> Iterator[str]:
    answer, refresh, rotation = profile.answer, profile.refresh, profile.rotation
    if refresh.presents == "access_token":
        if rotation.mode != "none":
            yield (
                "[rotation] mode: a refresh that presents the access token has no refresh "
                'token to rotate: use "none"'
            )
        if answer.refresh_token:
            yield (
                "[answer] refresh_token: a refresh that presents the access token gets no "
                'refresh token: use ""'
            )
    elif not answer.refresh_token:
        yield (
            "[answer] refresh_token: a refresh that presents the refresh token needs its "
            'name in the answer (or [refresh] presents = "access_token")'
        )
    if profile.revoke.presents == "refresh_token" and not answer.refresh_token:
        yield '[revoke] presents: this provider issues no refresh token: use "access_token"'
    if (rotation.mode == "grace") != (rotation.grace > timedelta(0)):
        yield '[rotation] grace: a grace period goes with mode = "grace", and only with it'
    names = [
        name
        for name in (
            answer.access_token,
            answer.refresh_token,
            answer.access_expiry,
            answer.refresh_expiry,
            answer.user_id,
            answer.scope,
            *answer.fields,
        )
        if name
    ]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        yield f"[answer] {twice[0]!r} names two of the answer's fields"


def _timing(profile: Profile) -> Iterator[str]:
    lifetimes, refresh = profile.lifetimes, profile.refresh
    zero = timedelta(0)
    if lifetimes.max_access <= zero or lifetimes.max_refresh <= zero:
        yield "[lifetimes] max_access and max_refresh must be longer than 0s"
        return
    if lifetimes.access is not None and not zero < lifetimes.access <= lifetimes.max_access:
        yield (
            "[lifetimes] access must be longer than 0s and at most max_access "
            f"({format_duration(lifetimes.max_access)})"
        )
    if not zero < refresh.window < lifetimes.max_access:
        yield (
            "[refresh] window must be longer than 0s and shorter than [lifetimes] max_access "
            f"({format_duration(lifetimes.max_access)}), or every run would refresh every token"
        )
    if refresh.min_age > zero:
        if lifetimes.access is None:
            yield (
                "[lifetimes] access is missing: a minimum age ([refresh] min_age) is counted "
                "from when a token was issued, which an imported token's expiry tells only "
                "with the lifetime the provider issues"
            )
        elif refresh.min_age + refresh.window >= lifetimes.access:
            yield (
                "[refresh] min_age and window: a token must be old enough to refresh before "
                f"it is due; together they must be shorter than [lifetimes] access "
                f"({format_duration(lifetimes.access)})"
            )


def _errors(profile: Profile) -> Iterator[str]:
    errors = profile.errors
    kinds = {
        "success": frozenset(errors.success),
        "reconnect": errors.reconnect,
        "app_rejected": errors.app_rejected,
        "transient": errors.transient,
    }
    seen: dict[str, str] = {}
    for kind, codes in kinds.items():
        for code in sorted(codes):
            if code in seen:
                yield f"[errors] {code!r} is in both {seen[code]} and {kind}: it means one thing"
            seen[code] = kind
    if len(errors.code) != len(errors.description):
        yield "[errors] description: one path for each of code's (description[i] is code[i]'s)"
    listed = (*errors.success, *errors.reconnect, *errors.app_rejected, *errors.transient)
    numbers = [code for code in listed if code.removeprefix("-").isdigit()]
    if errors.code_kind == "number" and len(numbers) != len(listed):
        yield '[errors] code_kind: "number", but a listed code is not a whole number'
    if not errors.code and (errors.reconnect or errors.app_rejected or errors.transient):
        yield "[errors] code: no path to read an error code from, yet codes are listed"


def _consent(profile: Profile) -> Iterator[str]:
    consent, urls = profile.consent, profile.urls
    if (consent.method == "GET") != (consent.body == "query"):
        yield (
            f"[consent] body: a {consent.method} sends {consent.body!r}; a GET sends its "
            'parameters in the query string (body = "query"), a POST in a form or JSON body'
        )
    if (urls.long_lived is None) != (not consent.long_lived_grant_type):
        yield (
            "[consent] long_lived_grant_type: a second exchange ([urls] long_lived) needs its "
            "grant type, and a grant type needs the URL"
        )
    if urls.long_lived is not None and profile.refresh.presents != "access_token":
        yield (
            "[urls] long_lived: only a provider that refreshes with the access token "
            "exchanges a short-lived one for a long-lived one"
        )
    if urls.long_lived is not None and profile.exchange_auth == "none":
        yield "[consent] client_auth: the long-lived exchange sends the app's secret: not none"
