"""The consent URL and its values: exact parameters and their encoding, state and PKCE
verifiers, the RFC 7636 challenge, and which redirect URIs are refused."""

from __future__ import annotations

import re
import string
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from standin_consent import challenge_of
from tokenrefresh.adapters.tiktok import (
    AUTHORIZE_URL,
    authorize_url,
    check_redirect_uri,
    code_challenge,
    new_code_verifier,
    new_state,
)
from tokenrefresh.adapters.tiktok.consent import MAX_CODE_LENGTH, check_code, check_code_verifier

# RFC 7636, appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def test_rfc_7636_appendix_b_vector() -> None:
    assert code_challenge(RFC_VERIFIER, "base64url") == RFC_CHALLENGE
    # Hex is the same digest, written out: what TikTok's desktop page shows.
    hex_challenge = code_challenge(RFC_VERIFIER)
    assert hex_challenge == ("13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3")
    assert code_challenge(RFC_VERIFIER, "hex") == hex_challenge
    # The stand-in checks with the same arithmetic.
    assert challenge_of(RFC_VERIFIER, "hex") == hex_challenge
    assert challenge_of(RFC_VERIFIER, "base64url") == RFC_CHALLENGE


@pytest.mark.parametrize(
    "verifier", ["", "a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + " ", "é" * 43]
)
def test_a_verifier_outside_rfc_7636_is_refused(verifier: str) -> None:
    with pytest.raises(ValueError, match="43 to 128 characters"):
        code_challenge(verifier)


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown code challenge encoding"):
        code_challenge(RFC_VERIFIER, "base64")  # type: ignore[arg-type]


def test_new_verifiers_and_states_are_fresh_and_well_formed() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert len(verifier) == 64
        assert set(verifier) <= UNRESERVED
        code_challenge(verifier)  # acceptable to the challenge function
    assert set("".join(verifiers)) >= set("-._~")  # the whole set is drawn from
    states = {new_state() for _ in range(50)}
    assert len(states) == 50
    for state in states:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", state)


# ----------------------------------------------------------------------------- the URL


def test_the_url_has_exactly_the_web_parameters_in_order() -> None:
    url = authorize_url(
        client_key="aw12ab34cd",
        redirect_uri="https://example.com/tiktok/callback",
        scopes=["user.info.basic", "video.publish"],
        state="st4te_-X",
    )
    assert url == (
        "https://www.tiktok.com/v2/auth/authorize/?client_key=aw12ab34cd&response_type=code"
        "&scope=user.info.basic%2Cvideo.publish"
        "&redirect_uri=https%3A%2F%2Fexample.com%2Ftiktok%2Fcallback&state=st4te_-X"
    )
    assert url.startswith(AUTHORIZE_URL + "?")


def test_pkce_adds_the_challenge_and_s256() -> None:
    url = authorize_url(
        client_key="key",
        redirect_uri="http://127.0.0.1:8765/callback",
        scopes=["user.info.basic"],
        state="s",
        code_challenge=RFC_CHALLENGE,
        base_url="https://auth.example.test/authorize",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://auth.example.test/authorize"
    assert parse_qsl(parts.query, strict_parsing=True) == [
        ("client_key", "key"),
        ("response_type", "code"),
        ("scope", "user.info.basic"),
        ("redirect_uri", "http://127.0.0.1:8765/callback"),
        ("state", "s"),
        ("code_challenge", RFC_CHALLENGE),
        ("code_challenge_method", "S256"),
    ]


def test_every_value_is_percent_encoded() -> None:
    awkward = "a b&c=d+e/f?g#h%i"
    url = authorize_url(
        client_key=awkward,
        redirect_uri="https://example.com/cb?x=1&y=2",
        scopes=["scope+one", "two/three"],
        state=awkward,
    )
    query = urlsplit(url).query
    assert " " not in url
    assert "#" not in url
    assert query.count("&") == 4  # the separators only
    assert "client_key=a%20b%26c%3Dd%2Be%2Ff%3Fg%23h%25i&" in query
    assert dict(parse_qsl(query, strict_parsing=True)) == {
        "client_key": awkward,
        "response_type": "code",
        "scope": "scope+one,two/three",
        "redirect_uri": "https://example.com/cb?x=1&y=2",
        "state": awkward,
    }


GOOD: dict[str, Any] = {
    "client_key": "key",
    "redirect_uri": "https://example.com/cb",
    "scopes": ["user.info.basic"],
    "state": "state",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_key": ""}, "must not be empty"),
        ({"state": ""}, "must not be empty"),
        ({"base_url": ""}, "must not be empty"),
        ({"scopes": []}, "at least one scope"),
        ({"scopes": ["user.info.basic", ""]}, "no scope may be empty"),
        ({"scopes": "user.info.basic"}, "not one string"),
        ({"scopes": ["user.info.basic,video.list"]}, "comma or whitespace"),
        ({"scopes": ["user.info basic"]}, "comma or whitespace"),
        ({"scopes": ["user.info.basic\n"]}, "comma or whitespace"),
        ({"code_challenge": ""}, "code_challenge must not be empty"),
        ({"redirect_uri": ""}, "absolute URL"),
        ({"redirect_uri": "http://example.com/cb"}, "use https"),
    ],
)
def test_bad_arguments_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        authorize_url(**{**GOOD, **change})


# ----------------------------------------------------------------------------- redirect URIs


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com/callback",
        "HTTPS://Example.com:8443/cb?x=1",
        "http://127.0.0.1:8765/callback",
        "http://localhost:1/",
        "http://[::1]:8765/cb",
    ],
)
def test_good_redirect_uris_pass(uri: str) -> None:
    check_redirect_uri(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/callback", "must be on 127.0.0.1, ::1 or localhost; use https"),
        ("http://127.0.0.2:8765/cb", "must be on 127.0.0.1, ::1 or localhost"),
        ("http://127.0.0.1/callback", "must name a port"),
        ("http://localhost/cb", "must name a port"),
        ("https://example.com/cb#top", "must not have a fragment"),
        ("https://example.com/cb#", "must not have a fragment"),
        ("ftp://example.com/cb", "must use https"),
        ("/callback", "absolute URL with a host"),
        ("https://user:pw@example.com/cb", "user name or password"),
        ("http://127.0.0.1:99999/cb", "not a valid URL"),
        # urlsplit drops tabs and newlines without a word: the URI TikTok compares would
        # then not be the one typed.
        ("https://example.com/c\tb", "must not contain a space or a control character"),
        ("https://example.com/cb\n", "must not contain a space or a control character"),
        ("https://exam\x00ple.com/cb", "must not contain a space or a control character"),
        ("https://example.com/c b", "must not contain a space or a control character"),
        ("https://example.com/cb\u2028", "must not contain a space or a control character"),
        ("https://example.com/" + "x" * 2029, "longer than 2048 characters"),
    ],
)
def test_bad_redirect_uris_are_refused_with_a_reason(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_redirect_uri(uri)


def test_a_redirect_uri_of_2048_characters_passes() -> None:
    check_redirect_uri("https://example.com/" + "x" * 2028)


# ----------------------------------------------------------------------------- codes, verifiers


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("abc*!123", "abc*!123"),
        ("  abc \n", "abc"),
        ("abc%2A%21123", "abc*!123"),
        ("abc%252A", "abc%2A"),  # decoded once, not twice
        ("a+b", "a+b"),  # a plus stays a plus: the code is not form-decoded
        ("x" * MAX_CODE_LENGTH, "x" * MAX_CODE_LENGTH),
    ],
)
def test_codes_that_can_be_one_are_sent_decoded_once(typed: str, sent: str) -> None:
    assert check_code(typed) == sent


CODE_REFUSALS = {
    "the authorization code is empty",
    "the authorization code has a % that is not percent-encoding (%XX)",
    "the authorization code's percent-encoding is not UTF-8",
    "the authorization code holds a space, a control character or a character outside ASCII: "
    "TikTok's codes are visible ASCII only",
}


@given(st.text(max_size=40) | st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")))
def test_any_text_is_a_visible_ascii_code_or_refused_without_being_shown(typed: str) -> None:
    refusal = None
    try:
        code = check_code(typed)
    except ValueError as error:
        refusal = str(error)
    if refusal is not None:
        assert refusal in CODE_REFUSALS  # a fixed text: never the code itself
        return
    assert re.fullmatch(r"[!-~]{1,1024}", code)


@pytest.mark.parametrize("verifier", ["", "a" * 42, "a" * 129, "a" * 42 + "=", "a" * 42 + "\n"])
def test_check_code_verifier_refuses_what_rfc_7636_does(verifier: str) -> None:
    with pytest.raises(ValueError, match="43 to 128 characters"):
        check_code_verifier(verifier)
