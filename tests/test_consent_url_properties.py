"""The consent URL of any shipped profile is built from values an operator or a caller
gives (client id, redirect URI, scopes, state): whatever they hold, each comes back out of
the URL exactly as given, under its own name, and nothing else gets in (an `&` or `=` in a
value never adds a parameter). And a user id from a code answer is accepted only as the
visible text it must be."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrefresh.adapters.oauth.code import checked_user_id, consent_url
from tokenrefresh.base.providers import load_profiles

PROFILES = [
    profile
    for profile in load_profiles().values()
    if not profile.template and profile.urls.authorize is not None
]
TEXT = st.text(min_size=1, max_size=40)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda profile: profile.name)
@settings(max_examples=20, deadline=None)  # per profile (thirteen)
@given(
    client_id=TEXT,
    redirect_uri=TEXT,
    state=TEXT,
    scopes=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    challenge=st.none() | TEXT,
)
def test_every_value_comes_back_out_of_the_consent_url_as_given(
    profile: object,
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: list[str],
    challenge: str | None,
) -> None:
    from tokenrefresh.base.providers import Profile

    assert isinstance(profile, Profile)
    consent = profile.consent
    url = consent_url(
        profile,
        authorize_url="https://consent.example/authorize",
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        code_challenge=challenge,
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "consent.example", "/authorize")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    expected = {
        consent.client_id_name: client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": state,
        **({"scope": consent.scope_separator.join(scopes)} if scopes else {}),
        **consent.params,
        **(
            {"code_challenge": challenge, "code_challenge_method": "S256"}
            if challenge is not None
            else {}
        ),
    }
    assert dict(pairs) == expected
    assert len(pairs) == len(expected)  # no value added a parameter of its own


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(max_size=300), st.integers(), st.floats(), st.booleans()))
def test_a_user_id_is_visible_ascii_text_of_at_most_255_characters_or_refused(
    value: object,
) -> None:
    refusal: str | None = None
    try:
        user_id = checked_user_id(value, ("a-secret-token-value",))
    except ValueError as error:
        refusal = str(error)
    if refusal is not None:  # it says why, never repeating what it refused
        assert len(str(value)) < 3 or str(value) not in refusal
        return
    assert 1 <= len(user_id) <= 255
    assert all("!" <= char <= "~" for char in user_id)
    assert "a-secret-token-value" not in user_id
