"""The stand-in's consent page (``GET /v2/auth/authorize/``), through real HTTP: it says
yes at once with a 302 to the redirect URI carrying a code and the state; the code works
once, for code_ttl seconds, with its redirect URI and the verifier of its PKCE challenge."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from standin import AUTHORIZE_PATH, TikTokStandIn
from standin_consent import DEMO_OPEN_ID, challenge_of

CALLBACK = "http://127.0.0.1:8766/callback"
VERIFIER = "v" * 20 + "-._~" + "w" * 40


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def consent(
    http: requests.Session, standin: TikTokStandIn, **params: str | None
) -> requests.Response:
    """Open the consent page with the parameters authorize-url sends (None: left out)."""
    query = {
        "client_key": standin.client_key,
        "response_type": "code",
        "scope": "user.info.basic,video.publish",
        "redirect_uri": CALLBACK,
        "state": "the-state",
        "code_challenge": challenge_of(VERIFIER, "hex"),
        "code_challenge_method": "S256",
        **params,
    }
    sent = {name: value for name, value in query.items() if value is not None}
    url = f"{standin.base_url}{AUTHORIZE_PATH}?{urlencode(sent)}"
    return http.get(url, allow_redirects=False, timeout=5)


def code_of(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    assert answer.text == location + "\n"
    [code] = parse_qs(urlsplit(location).query)["code"]
    return code


def exchange(
    http: requests.Session, standin: TikTokStandIn, code: str, **overrides: str | None
) -> requests.Response:
    form = {
        "client_key": standin.client_key,
        "client_secret": standin.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
        **overrides,
    }
    data = {name: value for name, value in form.items() if value is not None}
    return http.post(standin.token_url, data=data, timeout=5)


def test_says_yes_with_a_code_and_the_state(http: requests.Session, standin: TikTokStandIn) -> None:
    answer = consent(http, standin)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["the-state"]
    assert query["scopes"] == ["user.info.basic,video.publish"]
    code = code_of(answer)
    assert "%2A%21" in answer.headers["Location"]  # TikTok's `*!`, percent-encoded
    assert standin.is_code_pending(code)
    tokens = exchange(http, standin, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["open_id"] == DEMO_OPEN_ID == "demo-new-creator"
    assert tokens.json()["scope"] == "user.info.basic,video.publish"
    assert standin.current_refresh_token(DEMO_OPEN_ID) == tokens.json()["refresh_token"]


def test_open_id_chooses_the_user_and_base64url_challenges_work(
    http: requests.Session, standin: TikTokStandIn
) -> None:
    code = code_of(
        consent(
            http,
            standin,
            open_id="creator-0042",
            code_challenge=challenge_of(VERIFIER, "base64url"),
        )
    )
    tokens = exchange(http, standin, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["open_id"] == "creator-0042"


def test_without_a_challenge_no_verifier_is_needed(
    http: requests.Session, standin: TikTokStandIn
) -> None:
    code = code_of(consent(http, standin, code_challenge=None, code_challenge_method=None))
    assert exchange(http, standin, code, code_verifier=None).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"code_verifier": "x" * 64}, "Code verifier or code challenge is invalid."),
        ({"code_verifier": None}, "Code verifier is required."),
        (
            {"redirect_uri": CALLBACK + "2"},
            "redirect_uri does not match the one of the authorization request.",
        ),
    ],
    ids=["wrong-verifier", "no-verifier", "other-redirect-uri"],
)
def test_a_code_is_bound_to_its_verifier_and_redirect_uri_and_spent_by_a_failure(
    http: requests.Session,
    standin: TikTokStandIn,
    overrides: dict[str, str | None],
    description: str,
) -> None:
    code = code_of(consent(http, standin))
    refused = exchange(http, standin, code, **overrides)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert refused.json()["error_description"] == description
    again = exchange(http, standin, code)  # now right, but the code is spent
    assert again.json()["error_description"] == "Authorization code has already been used."
    assert standin.exchange_count() == 0


def test_a_code_works_once(http: requests.Session, standin: TikTokStandIn) -> None:
    code = code_of(consent(http, standin))
    assert exchange(http, standin, code).status_code == 200
    reused = exchange(http, standin, code)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert reused.json()["error_description"] == "Authorization code has already been used."
    assert standin.exchange_count(DEMO_OPEN_ID) == 1


def test_a_code_is_short_lived(http: requests.Session, standin: TikTokStandIn) -> None:
    standin.code_ttl = 0.0
    code = code_of(consent(http, standin))
    late = exchange(http, standin, code)
    assert late.json()["error_description"] == "Authorization code has expired."


def test_every_consent_gives_a_new_code(http: requests.Session, standin: TikTokStandIn) -> None:
    assert code_of(consent(http, standin)) != code_of(consent(http, standin))


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"client_key": "someone-else"}, "client_key is not the stand-in's app (test-client-key)"),
        ({"response_type": "token"}, "response_type must be code"),
        (
            {"redirect_uri": "/callback"},
            "redirect_uri must be an absolute http(s) URL without a fragment",
        ),
        (
            {"redirect_uri": CALLBACK + "#x"},
            "redirect_uri must be an absolute http(s) URL without a fragment",
        ),
        ({"state": None}, "state is missing"),
        ({"code_challenge_method": "plain"}, "code_challenge_method must be S256"),
        ({"code_challenge": None}, "code_challenge_method without a code_challenge"),
        ({"code_challenge": "abc"}, "code_challenge is not a SHA-256 challenge (hex or base64url)"),
        ({"open_id": "two words"}, "open_id must be 1 to 255 visible ASCII characters"),
    ],
)
def test_a_request_it_cannot_take_is_400_with_the_reason_and_no_code(
    http: requests.Session, standin: TikTokStandIn, params: dict[str, str | None], reason: str
) -> None:
    answer = consent(http, standin, **params)
    assert (answer.status_code, answer.text) == (400, reason + "\n")
    assert "Location" not in answer.headers
    assert standin.issued_codes == []


def test_a_parameter_given_twice_is_refused(http: requests.Session, standin: TikTokStandIn) -> None:
    url = f"{standin.base_url}{AUTHORIZE_PATH}?state=a&state=b"
    answer = http.get(url, allow_redirects=False, timeout=5)
    assert (answer.status_code, answer.text) == (400, "a parameter is given twice\n")
