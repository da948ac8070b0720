"""Connecting an account at any provider, as its profile says: the consent URL the user
opens, the code exchange that follows, and what its answer means. The URL and the request
are pure; `ProviderClient.exchange_code` makes the one call.

An answer to a code is a grant only if it can be stored as a new account: a refresh token
(unless the provider refreshes with the access token itself), and a user id, either in the
answer (`[answer] user_id`: TikTok's `open_id`) or given by the caller. The user id becomes
the account's key and is printed, so it is checked, not trusted (`checked_user_id`). The
code is spent whatever comes of it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from urllib.parse import urlencode

from tokenrefresh.adapters.oauth.answer import enveloped, interpret_answer
from tokenrefresh.adapters.oauth.reading import Answer, json_object, tokens_in
from tokenrefresh.adapters.oauth.request import Request, code_request
from tokenrefresh.base.outcomes import TokenGrant, UnusableGrant
from tokenrefresh.base.providers import Profile
from tokenrefresh.base.scrub import scrub
from tokenrefresh.base.settings import ClientCredentials

__all__ = [
    "CODE_REJECTED",
    "CODE_USED",
    "USER_ID_MAX_LENGTH",
    "checked_user_id",
    "code_answer_profile",
    "connect_refusal",
    "consent_url",
    "exchange_request",
    "interpret_code_answer",
]

CODE_REJECTED = "the authorization code was not accepted"
CODE_USED = "the authorization code may have been used"  # a call cut short after sending
USER_ID_MAX_LENGTH = 255  # accounts.open_id is VARCHAR(255); `accounts import` allows as much
_USER_ID_SHAPE = re.compile(r"[!-~]+")  # visible ASCII: no space, no control character


def connect_refusal(profile: Profile) -> str | None:
    """Why `connect` cannot serve this provider (None: it can). Its accounts are imported
    instead (`accounts import --app`). A provider without a consent page of ours (TikTok
    Shop: each service has its own authorization link) can still exchange a code."""
    if profile.urls.token is None:
        return f"the {profile.name} profile names no token URL"
    if profile.refresh.presents == "access_token" and profile.urls.long_lived is None:
        # Its refresh presents the access token: one from the code must be long-lived.
        return (
            f"the {profile.name} profile says no long-lived exchange ([urls] long_lived) for "
            "the code's token"
        )
    return None


def consent_url(
    profile: Profile,
    *,
    authorize_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    code_challenge: str | None = None,
) -> str:
    """The consent page's URL: the client id under the profile's name, response_type=code,
    the redirect URI, the scopes joined by the profile's separator, the state, the profile's
    fixed parameters, and an S256 challenge (RFC 7636: base64url) when given."""
    if isinstance(scopes, str):
        raise ValueError("scopes must be a list of scope names, not one string")
    consent = profile.consent
    params: dict[str, str] = {
        consent.client_id_name: client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if scopes:
        params["scope"] = consent.scope_separator.join(scopes)
    params.update(consent.params)
    if code_challenge is not None:
        params.update(code_challenge=code_challenge, code_challenge_method="S256")
    separator = "&" if "?" in authorize_url else "?"
    return authorize_url + separator + urlencode(params)


def exchange_request(
    profile: Profile,
    credentials: ClientCredentials | None,
    url: str,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
) -> Request:
    """The code exchange (RFC 6749 section 4.1.3): the code under the profile's name, its
    grant type and the redirect URI (unless the provider takes none), and the PKCE
    verifier; a form POST or a GET, with the app's credentials, as [consent] says."""
    consent = profile.consent
    fields = {consent.code_name: code, "grant_type": consent.code_grant_type}
    if consent.send_redirect_uri:
        fields["redirect_uri"] = redirect_uri
    if code_verifier is not None:
        fields["code_verifier"] = code_verifier
    return code_request(profile, credentials, url, fields)


def interpret_code_answer(answer: Answer, profile: Profile, secrets: tuple[str, ...]) -> TokenGrant:
    """One answer to an authorization-code grant as a TokenGrant that can be stored, or one
    of the three outcome exceptions (UnusableGrant: tokens that cannot be stored); total, and
    no fragment of `secrets` or of a token in the body is ever shown. `open_id` is the
    checked user id of the answer, or None where the provider's answer carries none.
    Where the profile says so, the code answer has its own envelope and user id field
    (Instagram's `{"data": [{access_token, user_id, permissions}]}`; an answer without the
    envelope is read as the flat object Instagram's older pages show)."""
    fields, _ = json_object(answer.body)  # the id as sent, before the reader cut it
    profile = code_answer_profile(profile, fields)
    grant = interpret_answer(answer, profile, secrets, rejection_context=CODE_REJECTED)
    details = {"http_status": grant.http_status, "log_id": grant.log_id, "elapsed": grant.elapsed}
    unusable = f"{profile.label}'s answer to the authorization code"
    if grant.refresh_token is None and profile.refresh.presents == "refresh_token":
        raise UnusableGrant(f"{unusable} lacks a refresh token", **details)
    name = profile.answer.user_id
    if not name:
        return dataclasses.replace(grant, open_id=None)
    data = enveloped(fields, profile.answer.envelope) if fields else None
    raw = data.get(name) if isinstance(data, Mapping) else None
    try:
        user_id = checked_user_id(raw, (*secrets, *tokens_in(fields)))
    except ValueError as error:
        raise UnusableGrant(f"{unusable} carries no usable {name}: {error}", **details) from None
    return dataclasses.replace(grant, open_id=user_id)


def code_answer_profile(profile: Profile, fields: Mapping[str, object] | None) -> Profile:
    """`profile` with the code answer's envelope and user id field where [consent] names
    them; an envelope that this answer lacks is taken to be none (a flat answer)."""
    consent, names = profile.consent, profile.answer
    envelope = consent.envelope or names.envelope
    if consent.envelope and fields is not None and consent.envelope not in fields:
        envelope = ""
    if (envelope, profile.code_user_id) == (names.envelope, names.user_id):
        return profile
    answer = dataclasses.replace(names, envelope=envelope, user_id=profile.code_user_id)
    return dataclasses.replace(profile, answer=answer)


def checked_user_id(value: object, secrets: tuple[str, ...]) -> str:
    """`value` as a user id that may be stored and shown, or ValueError saying why it cannot
    be one (never showing it). An integer becomes its decimal text; `secrets`: the tokens and
    secrets that must not be in it."""
    if isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        value = str(value)  # a JSON integer ("1.0" and "1e3" are not one)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or value == "":
        raise ValueError("it has none")
    if not isinstance(value, str):
        raise ValueError(f"it is {_kind(value)}, not text")
    if len(value) > USER_ID_MAX_LENGTH:
        raise ValueError(f"it is {len(value)} characters long, more than {USER_ID_MAX_LENGTH}")
    if not _USER_ID_SHAPE.fullmatch(value):
        raise ValueError("it holds a space, a control character or a character outside ASCII")
    if any(secret and secret in value for secret in secrets) or scrub(value, *secrets) != value:
        raise ValueError("it holds one of the tokens or secrets of the exchange")
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, Decimal | float):
        return "a number with a fraction or an exponent"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"
