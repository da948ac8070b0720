"""The hardening of the TikTok answer reader holds for every shipped profile: for any answer
shaped by the profile's own names (its envelope, token and expiry fields, error paths and
codes) and any hostile value in them, the generic reader returns a grant or one of the three
outcomes, nothing else; a new refresh token is always kept, exactly; expiries land within
the profile's clamps; a listed reconnect code is a UserTokenRejected; and no reason, note,
code or log_id shows a fragment of a secret. (TikTok's own properties: test_answer_parser.)
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_answer_parser import (
    HEADERS,
    HOSTILE_STRINGS,
    JSON_VALUES,
    PRESENTED,
    REASON_LIMIT,
    SECRETS,
    SENT_AT,
    STATUSES,
    assert_shown_safely,
)
from tokenrefresh.adapters.oauth.answer import interpret_answer
from tokenrefresh.adapters.oauth.reading import MAX_RETRY_AFTER, Answer
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.providers import Profile, load_profiles

PROFILES = sorted(name for name, profile in load_profiles().items() if not profile.template)
CODE_SHAPES = {"text": r"[a-z0-9][a-z0-9_.]{0,63}", "number": r"-?[0-9]{1,12}"}


def nested(path: str, value: Any) -> dict[str, Any]:
    """{"error": {"code": value}} for the path `error.code`."""
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


def codes(profile: Profile) -> st.SearchStrategy[Any]:
    errors = profile.errors
    listed = sorted({*errors.success, *errors.reconnect, *errors.app_rejected, *errors.transient})
    as_sent = [int(code) if errors.code_kind == "number" else code for code in listed]
    return st.sampled_from(as_sent) | JSON_VALUES if as_sent else JSON_VALUES


@st.composite
def answers(draw: st.DrawFn, profile: Profile) -> dict[str, Any]:
    """An answer in the profile's shape, any value in any of its places."""
    names = profile.answer
    fields = [
        name
        for name in (
            names.access_token,
            names.refresh_token,
            names.access_expiry,
            names.refresh_expiry,
            names.user_id,
            names.scope,
            *names.fields,
        )
        if name
    ]
    inner = draw(st.fixed_dictionaries({}, optional=dict.fromkeys(fields, JSON_VALUES)))
    document: dict[str, Any] = dict(inner)
    if names.envelope:
        document = {names.envelope: draw(st.sampled_from([inner, inner, None, [], "data"]))}
    for code_path, description_path in zip(
        profile.errors.code, profile.errors.description, strict=True
    ):
        if draw(st.booleans()):
            document.update(nested(code_path, draw(codes(profile))))
        if draw(st.booleans()):
            document = _merge(document, nested(description_path, draw(JSON_VALUES)))
    return document


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def outcome_of(
    profile: Profile, status: int, headers: dict[str, str], body: bytes, sent_at: datetime
) -> TokenGrant | TikTokError:
    try:
        return interpret_answer(Answer(status, headers, body, sent_at, 0.1), profile, SECRETS)
    except (UserTokenRejected, AppCredentialsRejected, RefreshFailed) as error:
        return error


def assert_sound(
    profile: Profile, outcome: TokenGrant | TikTokError, status: int, sent_at: datetime
) -> None:
    assert outcome.http_status == status
    assert_shown_safely(outcome.log_id, SECRETS)
    if isinstance(outcome, TokenGrant):
        lifetimes = profile.lifetimes
        assert outcome.access_token is not None or outcome.refresh_token is not None
        assert sent_at <= outcome.access_expires_at <= sent_at + lifetimes.max_access
        if outcome.refresh_expires_at is not None:
            assert sent_at <= outcome.refresh_expires_at <= sent_at + lifetimes.max_refresh
        for note in outcome.notes:
            assert_shown_safely(note, SECRETS)
        assert_shown_safely(outcome.open_id, SECRETS)
        assert_shown_safely(outcome.scope, SECRETS)
        return
    assert_shown_safely(outcome.reason, SECRETS)
    assert len(outcome.reason) <= REASON_LIMIT
    if outcome.error_code is not None:
        assert re.fullmatch(CODE_SHAPES[profile.errors.code_kind], outcome.error_code)
        assert_shown_safely(outcome.error_code, SECRETS)
    if isinstance(outcome, RefreshFailed) and outcome.retry_after is not None:
        assert 0.0 <= outcome.retry_after <= MAX_RETRY_AFTER


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=25)  # per profile: about what six profiles had at 60 each
@given(data=st.data(), status=STATUSES, headers=HEADERS, sent_at=SENT_AT)
def test_any_answer_in_the_profiles_shape_is_a_grant_or_an_outcome(
    name: str, data: st.DataObject, status: int, headers: dict[str, str], sent_at: datetime
) -> None:
    profile = load_profiles()[name]
    body = json.dumps(data.draw(answers(profile))).encode()
    assert_sound(profile, outcome_of(profile, status, headers, body, sent_at), status, sent_at)


@pytest.mark.parametrize("name", [n for n in PROFILES if load_profiles()[n].answer.refresh_token])
@settings(max_examples=20)  # per profile
@given(
    data=st.data(),
    refresh_token=HOSTILE_STRINGS.filter(bool) | st.text(min_size=1, max_size=40),
    status=STATUSES,
    sent_at=SENT_AT,
)
def test_a_new_refresh_token_is_always_kept_exactly(
    name: str, data: st.DataObject, refresh_token: str, status: int, sent_at: datetime
) -> None:
    profile = load_profiles()[name]
    document = data.draw(answers(profile))
    names = profile.answer
    if names.envelope:
        inner = document.get(names.envelope)
        document[names.envelope] = {**(inner if isinstance(inner, dict) else {})}
        document[names.envelope][names.refresh_token] = refresh_token
    else:
        document[names.refresh_token] = refresh_token
    body = json.dumps(document).encode()
    outcome = outcome_of(profile, status, {}, body, sent_at)
    assert isinstance(outcome, TokenGrant)
    assert outcome.refresh_token == refresh_token
    assert_sound(profile, outcome, status, sent_at)


@pytest.mark.parametrize("name", [n for n in PROFILES if load_profiles()[n].errors.reconnect])
@settings(max_examples=15)  # per profile
@given(data=st.data(), status=st.sampled_from([200, 400, 401, 403]), sent_at=SENT_AT)
def test_a_listed_reconnect_code_means_the_user_must_reconnect(
    name: str, data: st.DataObject, status: int, sent_at: datetime
) -> None:
    profile = load_profiles()[name]
    errors = profile.errors
    code = data.draw(st.sampled_from(sorted(errors.reconnect)))
    sent = int(code) if errors.code_kind == "number" else code
    document = nested(errors.code[0], sent)
    description = data.draw(HOSTILE_STRINGS)
    document = _merge(document, nested(errors.description[0], description))
    body = json.dumps(document).encode()
    outcome = outcome_of(profile, status, {}, body, sent_at)
    assert isinstance(outcome, UserTokenRejected)
    assert outcome.error_code == code
    assert_sound(profile, outcome, status, sent_at)


@pytest.mark.parametrize("name", PROFILES)
def test_an_expiry_past_the_clamp_is_cut_to_it(name: str) -> None:
    profile = load_profiles()[name]
    names = profile.answer
    sent_at = datetime.fromisoformat("2026-12-03T00:00:00+00:00")
    far = timedelta(days=5000).total_seconds()
    expiry = far + sent_at.timestamp() if names.access_expiry_unit == "timestamp" else far
    inner = {names.access_token: "new-access-token-1", names.access_expiry: expiry}
    document = {names.envelope: inner} if names.envelope else inner
    outcome = outcome_of(profile, 200, {}, json.dumps(document).encode(), sent_at)
    assert isinstance(outcome, TokenGrant)
    assert outcome.access_expires_at == sent_at + profile.lifetimes.max_access
    assert f"{names.access_expiry} clamped to" in " ".join(outcome.notes)


@pytest.mark.parametrize(
    ("code", "shown"), [(10**20, None), (-(10**15), None), ("105002", "105002"), (" 7 ", "7")]
)
def test_a_code_of_an_odd_size_or_form_is_never_a_success(code: object, shown: str | None) -> None:
    """TikTok Shop reads whole-number codes: one too large to show is still an error, and
    one sent as its digits in a string is the same code (the access token beside it is
    not taken)."""
    shop = load_profiles()["tiktok-shop"]
    sent_at = datetime.fromisoformat("2026-12-03T00:00:00+00:00")
    document = {"code": code, "message": "no", "data": {"access_token": "new-access-token-1"}}
    outcome = outcome_of(shop, 200, {}, json.dumps(document).encode(), sent_at)
    assert type(outcome) is RefreshFailed
    assert outcome.error_code == shown
    assert outcome.reason == f"{shown or 'an unrecognised error code'} (HTTP 200): no"


@pytest.mark.parametrize("field", ["scope", "open_id"])
def test_a_scope_or_user_id_that_echoes_a_secret_in_another_case_is_not_kept(field: str) -> None:
    # Found by the property above: both are stored and shown in plain text.
    profile = load_profiles()["tiktok"]
    document = {
        "access_token": "act.new-access-token-1234",
        "refresh_token": "rft.new-refresh-token-5678",
        "expires_in": 7200,
        "refresh_expires_in": 86400,
        "open_id": "open-id-of-the-user",
        "scope": "user.info.basic",
        field: PRESENTED.upper(),
    }
    sent_at = datetime(2026, 12, 3, tzinfo=UTC)

    outcome = outcome_of(profile, 200, {}, json.dumps(document).encode(), sent_at)

    assert isinstance(outcome, TokenGrant)
    assert getattr(outcome, field) is None
    assert f"{field} held a fragment of a token or secret: not kept" in outcome.notes
    assert outcome.refresh_token == "rft.new-refresh-token-5678"  # the pair is kept whatever
