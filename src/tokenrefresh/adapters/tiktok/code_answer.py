"""What TikTok's answer to an authorization code means: `interpret_code_answer` is pure, like
`interpret_answer`, whose reading it shares, with two differences.

A rejection names what was rejected ("the authorization code was not accepted: ..."): the
code is single use and short-lived, so the user must go through consent again. And an answer
without a refresh token or a usable open_id is no grant (`UnusableGrant`): a new account
cannot be stored without both, and there is no stored token to keep instead. The code is
spent either way.

The open_id becomes the account's key and is printed, so it is checked, not trusted: 1 to
255 characters (the column's size) of visible ASCII, holding none of the call's secrets or
the answer's tokens; a JSON integer is taken as its decimal text; anything else is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal

from tokenrefresh.adapters.oauth.reading import Answer, json_object, tokens_in
from tokenrefresh.adapters.tiktok.answer import interpret_answer
from tokenrefresh.base.outcomes import TokenGrant, UnusableGrant
from tokenrefresh.base.scrub import scrub

__all__ = [
    "CODE_REJECTED",
    "CODE_USED",
    "OPEN_ID_MAX_LENGTH",
    "checked_open_id",
    "interpret_code_answer",
]

CODE_REJECTED = "the authorization code was not accepted"
CODE_USED = "the authorization code may have been used"  # a call cut short after sending
OPEN_ID_MAX_LENGTH = 255  # accounts.open_id is VARCHAR(255); `accounts import` allows as much
_OPEN_ID_SHAPE = re.compile(r"[!-~]+")  # visible ASCII: no space, no control character
_UNUSABLE = "TikTok's answer to the authorization code"


def interpret_code_answer(answer: Answer, secrets: tuple[str, ...]) -> TokenGrant:
    """One answer to an authorization-code grant as a TokenGrant with a refresh token and a
    checked open_id, or one of the three outcome exceptions (UnusableGrant, a RefreshFailed,
    for tokens that cannot be stored); total, and no fragment of `secrets` (the code, the
    client secret, the verifier) or of a token in the body is ever shown."""
    grant = interpret_answer(answer, secrets, rejection_context=CODE_REJECTED)
    details = {"http_status": grant.http_status, "log_id": grant.log_id, "elapsed": grant.elapsed}
    if grant.refresh_token is None:
        raise UnusableGrant(f"{_UNUSABLE} lacks a refresh token", **details)
    fields, _ = json_object(answer.body)  # the open_id as sent, before `interpret_answer` cut it
    raw = fields.get("open_id") if fields is not None else None
    try:
        open_id = checked_open_id(raw, (*secrets, *tokens_in(fields)))
    except ValueError as error:
        raise UnusableGrant(f"{_UNUSABLE} carries no usable open_id: {error}", **details) from None
    return dataclasses.replace(grant, open_id=open_id)


def checked_open_id(value: object, secrets: tuple[str, ...]) -> str:
    """`value` as an open_id that may be stored and shown, or ValueError saying why it cannot
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
    if len(value) > OPEN_ID_MAX_LENGTH:
        raise ValueError(f"it is {len(value)} characters long, more than {OPEN_ID_MAX_LENGTH}")
    if not _OPEN_ID_SHAPE.fullmatch(value):
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
