"""`accounts connect` and `accounts revoke` against what an operator may type and what TikTok
(or a gateway in front of it) may answer: refused before any call, nothing stored or
erased, exit code and exact message, what the stand-in received, and never a secret shown.
Both faces: the CLI and the library's `TokenStore.connect`."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine

from conftest import Cli, process_env
from helpers import AddAccounts, account, all_rows, assert_no_secret, stored_tokens
from standin import REVOKE_PATH, Reply, TikTokStandIn, tiktok_error
from tokenrefresh import InvalidArgument, ReconnectNeeded, TokenStore
from tokenrefresh.adapters.tiktok.consent import code_challenge

REDIRECT = "https://app.example/tiktok/callback"
VERIFIER = "v" * 20 + "-._~" + "w" * 40
SHAPE = "TikTok's codes are visible ASCII only"
ANY_CHARACTER = (
    "the authorization code holds a space, a control character or a character outside "
    f"ASCII: {SHAPE}"
)
BAD_VERIFIER = (
    "the code verifier is not one: a PKCE code verifier is 43 to 128 characters of A-Z, "
    "a-z, 0-9 and - . _ ~ (RFC 7636)"
)
WHAT = "the authorization code on it (and, for PKCE, the code verifier on a second line)"


def assert_nothing_happened(standin: TikTokStandIn, engine: Engine) -> None:
    assert standin.received == []
    assert all_rows(engine)["accounts"] == []


# ----------------------------------------------------------------------------- operator input

# (stdin, redirect URI, the message after "error: ")
CODE_TOO_LONG = "the authorization code is longer than 1024 characters"
NO_SPACE = "--redirect-uri: the redirect URI must not contain a space or a control character"
URI = "https://app.example/"
BAD_INPUT: list[Any] = [
    pytest.param("abc\x00def", REDIRECT, ANY_CHARACTER, id="code-nul"),
    pytest.param("abc\x1b[31mdef", REDIRECT, ANY_CHARACTER, id="code-esc"),
    pytest.param("abc def", REDIRECT, ANY_CHARACTER, id="code-space"),
    pytest.param("abc\u202edef", REDIRECT, ANY_CHARACTER, id="code-bidi"),
    pytest.param("cödé", REDIRECT, ANY_CHARACTER, id="code-non-ascii"),
    pytest.param("abc%00def", REDIRECT, ANY_CHARACTER, id="code-encoded-nul"),
    pytest.param("abc%0Adef", REDIRECT, ANY_CHARACTER, id="code-encoded-newline"),
    pytest.param(
        "abc%zzdef",
        REDIRECT,
        "the authorization code has a % that is not percent-encoding (%XX)",
        id="code-bad-percent",
    ),
    pytest.param(
        "abc%ffdef",
        REDIRECT,
        "the authorization code's percent-encoding is not UTF-8",
        id="code-encoded-not-utf8",
    ),
    pytest.param("c" * 1025, REDIRECT, CODE_TOO_LONG, id="code-too-long"),
    pytest.param("%41" * 1025, REDIRECT, CODE_TOO_LONG, id="code-too-long-decoded"),
    pytest.param("code\nabcde\n", REDIRECT, BAD_VERIFIER, id="verifier-5-characters"),
    pytest.param("code\n" + "v" * 129, REDIRECT, BAD_VERIFIER, id="verifier-129-characters"),
    pytest.param("code\n" + "v" * 42 + "+", REDIRECT, BAD_VERIFIER, id="verifier-plus"),
    pytest.param("code\n" + "v" * 42 + "\x1b", REDIRECT, BAD_VERIFIER, id="verifier-esc"),
    pytest.param("code", URI + "c\tb", NO_SPACE, id="redirect-tab"),
    pytest.param("code", URI + "cb\x1b[2J", NO_SPACE, id="redirect-esc"),
    pytest.param("code", URI + "c b", NO_SPACE, id="redirect-space"),
    pytest.param("code", URI + "cb\u202e", NO_SPACE, id="redirect-bidi"),
    pytest.param(
        "code",
        URI + "p" * 2048,
        "--redirect-uri: the redirect URI is longer than 2048 characters",
        id="redirect-too-long",
    ),
    pytest.param(
        "c" * 4097,
        REDIRECT,
        f"standard input holds more than 4096 characters: give only {WHAT}",
        id="stdin-over-4-kib",
    ),
]


@pytest.mark.parametrize(("stdin", "uri", "message"), BAD_INPUT)
def test_bad_input_is_refused_before_any_call(
    cli: Cli, standin: TikTokStandIn, engine: Engine, stdin: str, uri: str, message: str
) -> None:
    result = cli("accounts", "connect", "--redirect-uri", uri, input=stdin)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {message}\n"
    assert_nothing_happened(standin, engine)


@pytest.mark.parametrize(("stdin", "uri", "message"), BAD_INPUT[:-1])  # not stdin's limit
def test_the_library_refuses_the_same_input(
    env: dict[str, str], standin: TikTokStandIn, engine: Engine, stdin: str, uri: str, message: str
) -> None:
    code, _, verifier = stdin.partition("\n")
    with TokenStore.from_env(env) as store, pytest.raises(InvalidArgument) as refused:
        store.connect(code, redirect_uri=uri, code_verifier=verifier.strip() or None)
    assert str(refused.value) == message
    assert_nothing_happened(standin, engine)


@pytest.mark.parametrize("label", ["L" * 256, "   "], ids=["256-characters", "blank"])
def test_a_label_the_database_cannot_take_is_refused_before_the_code_is_spent(
    cli: Cli, env: dict[str, str], standin: TikTokStandIn, engine: Engine, label: str
) -> None:
    """On PostgreSQL a 256-character label failed only when storing, after TikTok had
    spent the code and issued the tokens."""
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--label", label, input=code)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "error: --label: a label is 1 to 255 characters\n"
    with TokenStore.from_env(env) as store, pytest.raises(InvalidArgument, match="--label"):
        store.connect(code, redirect_uri=REDIRECT, label=label)
    assert_nothing_happened(standin, engine)
    assert standin.is_code_pending(code)


def test_a_percent_encoded_code_is_decoded_once(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    """A code copied from the redirect URL's query string (`*` as %2A, `!` as %21)."""
    code = standin.authorize(
        "alice", redirect_uri=REDIRECT, code_challenge=code_challenge(VERIFIER)
    )
    assert "*" in code
    assert "!" in code
    encoded = quote(code, safe="")
    assert encoded != code
    result = cli(
        "accounts", "connect", "--redirect-uri", REDIRECT, input=f" {encoded} \n{VERIFIER}\n"
    )
    assert result.exit_code == 0, result.stderr
    [sent] = [received.form for received in standin.received]
    assert (sent["code"], sent["code_verifier"]) == (code, VERIFIER)
    assert account(engine, "alice")["status"] == "active"


def stdin_closed(*args: str) -> list[str]:
    """The command line of `tokenrefresh ARGS <&-`: started with standard input closed."""
    return ["sh", "-c", 'exec "$0" -m tokenrefresh "$@" <&-', sys.executable, *args]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("accounts", "connect", "--redirect-uri", REDIRECT),
            f"standard input is closed: give {WHAT}",
        ),
        (
            ("accounts", "import", "-"),
            "standard input is closed: give the JSON Lines on it, or a FILE",
        ),
        (("accounts", "revoke", "1"), "revoking an account needs --yes when not run interactively"),
    ],
    ids=["connect", "import", "revoke"],
)
def test_a_closed_standard_input_is_a_usage_error(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    args: tuple[str, ...],
    message: str,
) -> None:
    add_accounts(1)
    before = all_rows(engine)
    standin.reset_log()
    result = subprocess.run(
        stdin_closed(*args), env=process_env(env), capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: {message}\n"
    assert standin.received == []
    assert all_rows(engine) == before


@pytest.mark.slow
def test_a_flood_on_standard_input_is_not_read(
    env: dict[str, str], standin: TikTokStandIn, engine: Engine
) -> None:
    """Megabytes piped in: refused after a few KiB, most of it never read, nothing sent."""
    flood = 16 << 20
    written = 0
    with subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", "accounts", "connect", "--redirect-uri", REDIRECT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=process_env(env),
        bufsize=0,  # unbuffered: closing the pipe writes nothing more
    ) as process:
        assert process.stdin is not None
        pipe = process.stdin

        def feed() -> None:
            nonlocal written
            try:
                while written < flood:
                    written += pipe.write(b"c" * 65536)
            except (BrokenPipeError, ValueError):
                pass  # the process is gone, having read what it wanted

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        process.wait(timeout=120)  # not communicate(): that would close the pipe at once
        feeder.join(timeout=30)
        assert process.stdout is not None
        assert process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()
    assert (process.returncode, out) == (2, b"")
    assert err.decode() == (
        f"error: standard input holds more than 4096 characters: give only {WHAT}\n"
    )
    assert written < flood // 4  # what the pipe and a read buffer hold, not the flood
    assert_nothing_happened(standin, engine)


# ----------------------------------------------------------------------------- TikTok's open_id


def access_token_of(payload: dict[str, Any]) -> str:
    return str(payload["access_token"])


# (what the answer's open_id becomes, given the answer; why it is refused)
BAD_OPEN_IDS: list[Any] = [
    pytest.param(
        access_token_of, "it holds one of the tokens or secrets of the exchange", id="access-token"
    ),
    pytest.param(
        lambda p: f"id-{p['refresh_token']}",
        "it holds one of the tokens or secrets of the exchange",
        id="holds-refresh-token",
    ),
    pytest.param(lambda p: "o" * 30_000, "it is 30000 characters long, more than 255", id="30000"),
    pytest.param(lambda p: "o" * 256, "it is 256 characters long, more than 255", id="256"),
    pytest.param(lambda p: None, "it has none", id="null"),
    pytest.param(lambda p: "", "it has none", id="empty"),
    pytest.param(lambda p: True, "it is true or false, not text", id="true"),
    pytest.param(
        lambda p: 7.5, "it is a number with a fraction or an exponent, not text", id="float"
    ),
    pytest.param(
        lambda p: 1.0, "it is a number with a fraction or an exponent, not text", id="1.0"
    ),
    pytest.param(lambda p: {"id": "x"}, "it is an object, not text", id="object"),
    pytest.param(lambda p: ["x"], "it is a list, not text", id="list"),
    pytest.param(
        lambda p: "ab\x1b[31mcd",
        "it holds a space, a control character or a character outside ASCII",
        id="esc",
    ),
    pytest.param(
        lambda p: "ab cd",
        "it holds a space, a control character or a character outside ASCII",
        id="space",
    ),
    pytest.param(
        lambda p: "ab\u202ecd",
        "it holds a space, a control character or a character outside ASCII",
        id="bidi",
    ),
]
MISSING = object()


def unusable(why: str) -> str:
    return (
        f"TikTok's answer to the authorization code carries no usable open_id: {why}. The "
        "tokens TikTok issued cannot be stored without a refresh token and a usable open_id, "
        "so they were discarded and nothing was stored; the authorization code is spent: ask "
        "the user to authorize again"
    )


@pytest.mark.parametrize(("open_id", "why"), BAD_OPEN_IDS)
def test_an_answer_without_a_usable_open_id_stores_and_prints_nothing(
    cli: Cli, standin: TikTokStandIn, engine: Engine, open_id: Any, why: str
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.twist("alice", lambda payload: (200, {**payload, "open_id": open_id(payload)}))
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"error: {unusable(why)}\n"
    assert standin.exchange_count("alice") == 1  # the code was spent on this answer
    assert all_rows(engine)["accounts"] == []
    assert_no_secret(result, *standin.issued_tokens, standin.client_secret, code)


def test_an_answer_without_open_id_or_refresh_token_says_why(
    cli: Cli, env: dict[str, str], standin: TikTokStandIn, engine: Engine
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.twist("alice", lambda p: (200, {k: v for k, v in p.items() if k != "open_id"}))
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code)
    assert (result.exit_code, result.stderr) == (1, f"error: {unusable('it has none')}\n")
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.twist("alice", lambda p: (200, {k: v for k, v in p.items() if k != "refresh_token"}))
    with TokenStore.from_env(env) as store, pytest.raises(ReconnectNeeded) as caught:
        store.connect(code, redirect_uri=REDIRECT)
    assert str(caught.value).startswith(
        "TikTok's answer to the authorization code lacks a refresh token. The tokens TikTok "
        "issued cannot be stored"
    )
    assert all_rows(engine)["accounts"] == []


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param(12345678901234567890123, "12345678901234567890123", id="integer"),
        pytest.param(-7, "-7", id="negative"),
        pytest.param("o" * 255, "o" * 255, id="255-characters"),
        pytest.param("-000AbC_d.e~f+g/h=", "-000AbC_d.e~f+g/h=", id="punctuation"),
    ],
)
def test_an_open_id_that_can_be_one_is_stored_as_text(
    cli: Cli, env: dict[str, str], standin: TikTokStandIn, engine: Engine, sent: Any, stored: str
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.twist("alice", lambda payload: (200, {**payload, "open_id": sent}))
    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, "--json", input=code)
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"account_id": 1, "open_id": stored, "created": True}
    key = env["TOKENREFRESH_ENCRYPTION_KEYS"]
    assert stored_tokens(engine, stored, key)[1] == standin.current_refresh_token("alice")


def test_the_library_refuses_an_open_id_that_is_the_access_token(
    env: dict[str, str], standin: TikTokStandIn, engine: Engine
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT)
    standin.twist("alice", lambda payload: (200, {**payload, "open_id": access_token_of(payload)}))
    with TokenStore.from_env(env) as store, pytest.raises(ReconnectNeeded) as caught:
        store.connect(code, redirect_uri=REDIRECT)
    assert str(caught.value) == unusable("it holds one of the tokens or secrets of the exchange")
    assert all_rows(engine)["accounts"] == []


# ----------------------------------------------------------------------------- revoke


def oauth(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description, "log_id": "L1"}


FAILED = "error: revoking account 1 failed: {}; nothing was changed, try again\n"


# (TikTok's answer to the revoke, exit code, stderr, whether the tokens are erased)
REVOKE_ANSWERS: list[Any] = [
    pytest.param(Reply(401), 1, FAILED.format("unexpected HTTP 401 from TikTok"), False, id="401"),
    pytest.param(
        Reply(401, "<html><body>401 Authorization Required</body></html>"),
        1,
        FAILED.format("unexpected HTTP 401 from TikTok"),
        False,
        id="401-html",
    ),
    pytest.param(
        Reply(401, oauth("gateway_says_no", "nope")),
        1,
        FAILED.format("gateway_says_no (HTTP 401): nope"),
        False,
        id="401-unknown-code",
    ),
    pytest.param(
        tiktok_error("invalid_grant", 401, "Access token is invalid or has been revoked."),
        0,
        "",
        True,
        id="invalid_grant",
    ),
    pytest.param(
        Reply(401, {"error": {"code": "access_token_invalid", "message": "x", "log_id": "L"}}),
        0,
        "",
        True,
        id="access_token_invalid",
    ),
]


@pytest.mark.parametrize(("reply", "exit_code", "stderr", "erased"), REVOKE_ANSWERS)
def test_only_tiktoks_documented_answer_ends_an_account_without_a_revoke(
    cli: Cli,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    reply: Reply,
    exit_code: int,
    stderr: str,
    erased: bool,
) -> None:
    [issued] = add_accounts(1)
    before = all_rows(engine)["accounts"]
    standin.script(reply, open_id="user0")
    result = cli("accounts", "revoke", "1", "--yes")
    assert (result.exit_code, result.stderr) == (exit_code, stderr)
    [sent] = standin.received
    assert (sent.path, sent.form["token"]) == (REVOKE_PATH, issued.access_token)
    if erased:
        assert result.stdout == (
            "Revoked account 1 (user0) here (TikTok had no live token of it left); tokens erased.\n"
        )
        row = account(engine, "user0")
        assert row["status"] == "revoked"
        assert (row["access_token_ciphertext"], row["refresh_token_ciphertext"]) == (None, None)
    else:
        assert result.stdout == ""
        assert all_rows(engine)["accounts"] == before
