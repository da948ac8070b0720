"""`accounts authorize-url | connect | revoke | remove --revoke`, and the API's connect and
revoke, against the loopback stand-in: what TikTok received, what is stored, exit codes
and exact messages, and never a token in the output."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, all_rows, assert_no_secret, set_account, stored_tokens
from standin import Reply, TikTokStandIn, tiktok_error
from tokenrefresh import ReconnectNeeded, TokenStore
from tokenrefresh.adapters.tiktok.consent import code_challenge

REDIRECT = "https://app.example/tiktok/callback"


def exchanges(standin: TikTokStandIn) -> list[dict[str, str]]:
    return [
        received.form
        for received in standin.received
        if received.form.get("grant_type") == "authorization_code"
    ]


def secrets_of(standin: TikTokStandIn, *extra: str) -> list[str]:
    return [*standin.issued_tokens, standin.client_secret, *extra]


# ----------------------------------------------------------------------------- connect


def test_connect_stores_a_new_account_and_prints_no_token(
    cli: Cli, env: dict[str, str], standin: TikTokStandIn, engine: Engine
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--label", "Shop", input=code)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Connected new account 1 (alice).\n"
    [sent] = exchanges(standin)
    assert sent["code"] == code
    assert sent["redirect_uri"] == REDIRECT
    assert "code_verifier" not in sent
    row = account(engine, "alice")
    assert (row["status"], row["label"], row["token_generation"]) == ("active", "Shop", 1)
    access, refresh = stored_tokens(engine, "alice", env["TOKENREFRESH_ENCRYPTION_KEYS"])
    assert refresh == standin.current_refresh_token("alice")
    assert access in standin.issued_tokens
    assert_no_secret(result.stdout + result.stderr, *secrets_of(standin, code))


def test_connect_with_pkce_and_json(cli: Cli, standin: TikTokStandIn, engine: Engine) -> None:
    verifier = "v" * 20 + "-._~" + "w" * 40
    code = standin.authorize("bob", redirect_uri=REDIRECT, code_challenge=code_challenge(verifier))
    result = cli(
        "accounts", "connect", "--redirect-uri", REDIRECT, "--json", input=f"{code}\n{verifier}\n"
    )
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"account_id": 1, "open_id": "bob", "created": True}
    assert exchanges(standin)[0]["code_verifier"] == verifier
    assert account(engine, "bob")["status"] == "active"


def test_a_used_code_is_exit_2_and_changes_nothing(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    assert cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code).exit_code == 0
    before = all_rows(engine)
    again = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code)
    assert again.exit_code == 2
    assert again.stdout == ""
    assert again.stderr.startswith("error: the authorization code was not accepted: ")
    assert "nothing was stored" in again.stderr
    assert all_rows(engine) == before
    assert_no_secret(again.stderr, *secrets_of(standin, code))


def test_a_wrong_verifier_or_redirect_is_exit_2(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    verifier = "x" * 64
    code = standin.authorize(
        "carol", redirect_uri=REDIRECT, code_challenge=code_challenge(verifier)
    )
    wrong = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=f"{code}\n{'y' * 64}\n")
    assert wrong.exit_code == 2
    other = standin.authorize("carol", redirect_uri=REDIRECT)
    elsewhere = cli(
        "accounts", "connect", "--redirect-uri", "https://app.example/other", input=other
    )
    assert elsewhere.exit_code == 2
    assert "not accepted" in elsewhere.stderr
    assert all_rows(engine)["accounts"] == []


def test_connect_of_a_known_account_is_a_new_consent(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1, label="Old")
    set_account(engine, "user0", status="expired", last_error="TikTok rejected the refresh token")
    code = standin.authorize("user0", redirect_uri=REDIRECT)
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Reconnected account 1 (user0).\n"
    row = account(engine, "user0")
    assert (row["status"], row["label"], row["last_error"]) == ("active", "Old", None)
    assert row["token_generation"] == 2


@pytest.mark.parametrize(
    ("uri", "stdin", "message"),
    [
        ("http://app.example/cb", "code", "--redirect-uri: "),
        (REDIRECT + "#frag", "code", "--redirect-uri: "),
        (REDIRECT, "", "give the authorization code on standard input"),
        (REDIRECT, "a\nb\nc\n", "give the authorization code on standard input"),
    ],
    ids=["plain-http", "fragment", "no-code", "three-lines"],
)
def test_bad_connect_input_is_refused_before_any_call(
    cli: Cli, standin: TikTokStandIn, engine: Engine, uri: str, stdin: str, message: str
) -> None:
    result = cli("accounts", "connect", "--redirect-uri", uri, input=stdin)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}")
    assert standin.received == []
    assert all_rows(engine)["accounts"] == []


def code_tiktok_fails_once(standin: TikTokStandIn) -> str:
    """An authorization code for alice; TikTok answers its first exchange with a 503."""
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.script(tiktok_error("server_error", 503), open_id="alice")
    return code


def test_tiktok_down_during_connect_is_exit_1(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    code = code_tiktok_fails_once(standin)
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code)
    assert result.exit_code == 1
    assert "the code exchange failed" in result.stderr
    assert all_rows(engine)["accounts"] == []


def test_connect_json_failures_print_a_json_error_document(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    """stdout: {"error": {"code": <exit code>, "message": ...}}; stderr: the usual line."""
    code = code_tiktok_fails_once(standin)
    down = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--json", input=code)
    assert down.exit_code == 1
    assert set(down.json()) == {"error"}
    assert down.json()["error"]["code"] == 1
    assert "the code exchange failed" in down.json()["error"]["message"]
    assert down.stderr == f"error: {down.json()['error']['message']}\n"

    assert cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code).exit_code == 0
    before = all_rows(engine)
    used = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--json", input=code)
    assert used.exit_code == 2
    assert used.json()["error"]["code"] == 2
    assert used.json()["error"]["message"].startswith("the authorization code was not accepted: ")
    assert all_rows(engine) == before

    empty = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--json", input="")
    assert empty.exit_code == 2
    assert empty.json() == {
        "error": {
            "code": 2,
            "message": "give the authorization code on standard input (and, for PKCE, the "
            "code verifier on a second line)",
        }
    }
    assert_no_secret([down, used, empty], *secrets_of(standin, code))


# ----------------------------------------------------------------------------- authorize-url


def test_authorize_url_with_pkce(cli: Cli, standin: TikTokStandIn) -> None:
    result = cli(
        "accounts",
        "authorize-url",
        "--redirect-uri",
        REDIRECT,
        "--scope",
        "user.info.basic",
        "--scope",
        "video.publish",
        "--pkce",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    query = parse_qs(urlsplit(document["url"]).query)
    assert query["client_key"] == [standin.client_key]
    assert query["redirect_uri"] == [REDIRECT]
    assert query["scope"] == ["user.info.basic,video.publish"]
    assert query["state"] == [document["state"]]
    assert query["code_challenge"] == [code_challenge(document["code_verifier"])]
    assert query["code_challenge_method"] == ["S256"]
    plain = cli("accounts", "authorize-url", "--redirect-uri", REDIRECT)
    assert plain.exit_code == 0
    assert plain.stdout.startswith("https://www.tiktok.com/v2/auth/authorize/?")
    assert "code_challenge" not in plain.stdout
    assert plain.stderr.startswith("state: ")
    assert standin.received == []


# ----------------------------------------------------------------------------- revoke


def test_revoke_ends_the_tokens_at_tiktok_and_erases_them(
    cli: Cli, env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(2)
    result = cli("accounts", "revoke", "1", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Revoked account 1 (user0) at TikTok; tokens erased.\n"
    assert standin.access_revoked(issued[0].access_token)
    assert not standin.is_valid(issued[0].refresh_token)
    assert standin.is_valid(issued[1].refresh_token)  # the other account is untouched
    row = account(engine, "user0")
    assert row["status"] == "revoked"
    assert (row["access_token_ciphertext"], row["refresh_token_ciphertext"]) == (None, None)
    # Nobody refreshes it, hands out its token, or waits for its user.
    token = cli("accounts", "token", "1")
    assert token.exit_code == 1
    assert token.stderr == (
        "error: account 1 (user0) was revoked: its user must connect the TikTok account again\n"
    )
    refreshed = cli("refresh", "--window", "3h", "--json")
    assert refreshed.json()["counts"]["refreshed"] == 1
    status = cli("status", "--json").json()
    assert status["accounts"]["revoked"] == 1
    assert status["refresh_tokens"]["missing"] == 0
    assert status["reconnect_needed"] == {"count": 0, "accounts": []}
    # A new consent brings it back.
    code = standin.authorize("user0", redirect_uri=REDIRECT)
    assert cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code).exit_code == 0
    assert account(engine, "user0")["status"] == "active"
    key = env["TOKENREFRESH_ENCRYPTION_KEYS"]
    assert stored_tokens(engine, "user0", key)[1] == standin.current_refresh_token("user0")


def test_revoke_while_tiktok_is_down_changes_nothing(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(1)
    before = all_rows(engine)
    standin.script(Reply(status=503, body=b"down"), open_id="user0")
    result = cli("accounts", "revoke", "1", "--yes")
    assert result.exit_code == 1
    assert "revoking account 1 failed" in result.stderr
    assert "nothing was changed" in result.stderr
    assert all_rows(engine)["accounts"] == before["accounts"]
    assert standin.is_valid(issued[0].refresh_token)


def test_remove_with_revoke(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(1)
    result = cli("accounts", "remove", "1", "--revoke", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Revoked account 1 (user0) at TikTok; tokens erased.\nRemoved account 1 (user0).\n"
    )
    assert standin.access_revoked(issued[0].access_token)
    assert all_rows(engine)["accounts"] == []


def test_revoke_needs_yes_when_not_interactive(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(1)
    result = cli("accounts", "revoke", "1")
    assert result.exit_code == 2
    assert result.stderr == "error: revoking an account needs --yes when not run interactively\n"


# ----------------------------------------------------------------------------- the API


def test_the_api_connects_and_revokes(env: dict[str, str], standin: TikTokStandIn) -> None:
    code = standin.authorize("dave", redirect_uri=REDIRECT)
    with TokenStore.from_env(env) as store:
        connected = store.connect(code, redirect_uri=REDIRECT, label="Dave's shop")
        assert (connected.open_id, connected.created) == ("dave", True)
        token = store.access_token(open_id="dave")
        revoked = store.revoke(open_id="dave")
        assert revoked.at_tiktok is True
        assert standin.access_revoked(token.token)
        with pytest.raises(ReconnectNeeded, match="was revoked"):
            store.access_token(open_id="dave")
        assert store.account(open_id="dave").status == "revoked"
    assert json.dumps([connected.__dict__, revoked.__dict__])  # plain data, no token
    assert_no_secret(repr(connected) + repr(revoked), token.token)


def test_enable_refuses_a_revoked_account_and_says_so(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    assert cli("accounts", "revoke", "1", "--yes").exit_code == 0
    before = all_rows(engine)["accounts"]
    result = cli("accounts", "enable", "1")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: account 1 (user0) was revoked (its tokens erased), so enabling it would "
        "refresh nothing"
    )
    assert all_rows(engine)["accounts"] == before
