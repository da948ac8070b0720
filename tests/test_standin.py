"""The TikTok token endpoint stand-in, exercised through the real ``requests`` stack."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from standin import TOKEN_PATH, IssuedTokens, Reply, TikTokStandIn, tiktok_error
from standin_consent import challenge_of

TIMEOUT = 5.0


@pytest.fixture
def standin() -> Iterator[TikTokStandIn]:
    with TikTokStandIn() as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def form(standin: TikTokStandIn, refresh_token: str | None, **overrides: str) -> dict[str, str]:
    data = {
        "client_key": standin.client_key,
        "client_secret": standin.client_secret,
        "grant_type": "refresh_token",
    }
    if refresh_token is not None:
        data["refresh_token"] = refresh_token
    data.update(overrides)
    return data


def refresh(
    http: requests.Session,
    standin: TikTokStandIn,
    refresh_token: str | None,
    timeout: float = TIMEOUT,
    **overrides: str,
) -> requests.Response:
    return http.post(
        standin.token_url, data=form(standin, refresh_token, **overrides), timeout=timeout
    )


GRANT_FIELDS = {
    "access_token",
    "expires_in",
    "open_id",
    "refresh_expires_in",
    "refresh_token",
    "scope",
    "token_type",
}


def assert_grant(response: requests.Response) -> dict[str, Any]:
    """A 200 whose JSON body is a grant of exactly TikTok's seven fields; the body."""
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert set(body) == GRANT_FIELDS
    return body


def assert_error(response: requests.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_description"]
    int(body["log_id"], 16)
    return body


def test_refresh_rotates_and_old_token_is_invalid(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    issued = standin.issue("alice")
    assert issued.refresh_token.startswith("rft.")
    assert issued.access_token.startswith("act.")
    assert standin.current_refresh_token("alice") == issued.refresh_token

    response = refresh(http, standin, issued.refresh_token)
    body = assert_grant(response)
    assert body["open_id"] == "alice"
    assert body["expires_in"] == 7200
    assert body["refresh_expires_in"] == 15_552_000
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "user.info.basic,video.publish"
    assert body["access_token"].startswith("act.")
    assert body["refresh_token"].startswith("rft.")
    assert body["refresh_token"] != issued.refresh_token
    assert standin.current_refresh_token("alice") == body["refresh_token"]

    old = assert_error(refresh(http, standin, issued.refresh_token), 400, "invalid_grant")
    assert old["error_description"] == "Refresh token is invalid or expired."

    assert refresh(http, standin, body["refresh_token"]).status_code == 200
    assert standin.refresh_count() == 2
    assert standin.refresh_count("alice") == 2
    assert standin.refresh_count("nobody") == 0
    issued_tokens = standin.issued_tokens
    assert issued.refresh_token in issued_tokens
    assert body["access_token"] in issued_tokens
    assert body["refresh_token"] in issued_tokens


def test_issue_again_keeps_older_tokens_and_import_line(standin: TikTokStandIn) -> None:
    first = standin.issue("bob", scope="user.info.basic")
    second = standin.issue("bob")
    assert standin.is_valid(first.refresh_token)
    assert standin.is_valid(second.refresh_token)
    assert standin.current_refresh_token("bob") == second.refresh_token
    line = first.as_import_line(label="Bob", issued_at="2025-01-01T00:00:00Z")
    assert line == {
        "open_id": "bob",
        "access_token": first.access_token,
        "refresh_token": first.refresh_token,
        "expires_in": 7200,
        "refresh_expires_in": 15_552_000,
        "scope": "user.info.basic",
        "label": "Bob",
        "issued_at": "2025-01-01T00:00:00Z",
    }
    json.dumps(line)


def race(
    send: Callable[[requests.Session, TikTokStandIn, str], requests.Response],
    standin: TikTokStandIn,
    presented: str,
    n: int,
) -> list[int]:
    """``send`` (refresh or exchange) the same token or code from ``n`` threads at once (one
    Session each); the sorted statuses."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def use() -> None:
        with requests.Session() as session:
            barrier.wait()
            status = send(session, standin, presented).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=use) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return sorted(statuses)


def test_concurrent_double_use_exactly_one_wins(standin: TikTokStandIn) -> None:
    for round_ in range(10):
        token = standin.issue(f"user{round_}").refresh_token
        assert race(refresh, standin, token, 2 + round_ % 3) == [200] + [400] * (1 + round_ % 3)
    assert standin.refresh_count() == 10


def test_json_body_is_invalid_request(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("carol").refresh_token
    response = http.post(standin.token_url, json=form(standin, token), timeout=TIMEOUT)
    assert_error(response, 400, "invalid_request")
    (received,) = standin.received
    assert received.content_type == "application/json"
    assert received.form == {}
    assert json.loads(received.body)["refresh_token"] == token
    assert standin.is_valid(token)


def test_wrong_client_credentials_are_invalid_client(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    token = standin.issue("dave").refresh_token
    assert_error(refresh(http, standin, token, client_secret="nope"), 401, "invalid_client")
    data = form(standin, token)
    data["client_id"] = data.pop("client_key")
    response = http.post(standin.token_url, data=data, timeout=TIMEOUT)
    assert_error(response, 401, "invalid_client")
    assert standin.is_valid(token)
    assert standin.refresh_count() == 0


def test_wrong_grant_type_and_missing_token(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("erin").refresh_token
    response = refresh(http, standin, token, grant_type="client_credentials")
    assert_error(response, 400, "unsupported_grant_type")
    # An authorization_code grant is an exchange now: a refresh token is no code.
    body = assert_error(
        refresh(http, standin, token, grant_type="authorization_code"), 400, "invalid_grant"
    )
    assert body["error_description"] == "Authorization code is invalid."
    assert_error(refresh(http, standin, None), 400, "invalid_grant")
    assert_error(refresh(http, standin, "rft.unknown"), 400, "invalid_grant")
    assert standin.is_valid(token)


def test_scripted_per_open_id_reply_with_retry_after(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    alice = standin.issue("alice").refresh_token
    bob = standin.issue("bob").refresh_token
    standin.script(
        tiktok_error("rate_limit_exceeded", status=429, headers={"Retry-After": "1"}),
        open_id="alice",
    )
    assert standin.pending_scripts("alice") == 1
    assert refresh(http, standin, bob).status_code == 200  # bob is not affected
    response = refresh(http, standin, alice)
    assert_error(response, 429, "rate_limit_exceeded")
    assert response.headers["Retry-After"] == "1"
    assert standin.is_valid(alice)  # a scripted answer does not consume the token
    assert refresh(http, standin, alice).status_code == 200
    assert standin.pending_scripts("alice") == 0


def test_scripted_global_fifo_garbage_and_priority(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    token = standin.issue("frank").refresh_token
    standin.script(Reply(503), Reply(502, body="<html>bad gateway</html>"))
    standin.script(Reply(429, body={"error": {"code": "rate_limit_exceeded"}}), open_id="frank")

    first = refresh(http, standin, token)  # per-open_id queue first
    assert first.status_code == 429
    assert first.json() == {"error": {"code": "rate_limit_exceeded"}}
    second = refresh(http, standin, token)
    assert second.status_code == 503
    assert second.content == b""
    third = refresh(http, standin, "rft.unknown-to-anyone")  # global queue serves anyone
    assert third.status_code == 502
    assert third.text == "<html>bad gateway</html>"
    assert third.headers["Content-Type"].startswith("text/html")
    assert refresh(http, standin, token).status_code == 200
    assert standin.pending_scripts() == 0


def test_default_reply_storm(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("gina").refresh_token
    standin.default = Reply(503, headers={"Retry-After": "0"})
    standin.script(Reply(500))
    assert refresh(http, standin, token).status_code == 500
    for _ in range(3):
        assert refresh(http, standin, token).status_code == 503
    standin.default = None
    assert refresh(http, standin, token).status_code == 200
    assert standin.presented()[token] == 5


def test_scripted_delay_and_client_timeout(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("hank").refresh_token
    standin.script(Reply(200, body={"ok": True}, delay=0.15))
    started = time.monotonic()
    assert refresh(http, standin, token).json() == {"ok": True}
    assert time.monotonic() - started >= 0.15

    standin.script(Reply(200, body={"late": True}, delay=0.4))
    with pytest.raises(requests.ReadTimeout):
        refresh(http, standin, token, timeout=0.1)
    # The handler thread survives the client hanging up; the stand-in keeps working.
    assert refresh(http, standin, token).status_code == 200


def test_scripted_drop_is_a_connection_error(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    token = standin.issue("ivy").refresh_token
    standin.script(Reply(drop=True, delay=0.05))
    with pytest.raises(requests.ConnectionError):
        refresh(http, standin, token)
    assert standin.is_valid(token)
    assert refresh(http, standin, token).status_code == 200


def test_scripted_consume_is_a_lost_answer(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("jack").refresh_token
    standin.script(Reply(504, body="<html>gateway timeout</html>", consume=True), open_id="jack")
    response = refresh(http, standin, token)
    assert response.status_code == 504
    assert "gateway timeout" in response.text
    assert not standin.is_valid(token)
    assert_error(refresh(http, standin, token), 400, "invalid_grant")
    lost = standin.current_refresh_token("jack")
    assert lost is not None
    assert lost != token
    assert standin.lost_rotations == 1
    assert standin.refresh_count("jack") == 0
    assert refresh(http, standin, lost).status_code == 200


def test_invalid_grant_status_can_be_200(standin: TikTokStandIn, http: requests.Session) -> None:
    standin.invalid_grant_status = 200
    assert_error(refresh(http, standin, "rft.gone"), 200, "invalid_grant")


def test_omit_refresh_token_keeps_old_one_valid(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    token = standin.issue("kate").refresh_token
    standin.omit_refresh_token = True
    body = refresh(http, standin, token).json()
    assert "refresh_token" not in body
    assert body["access_token"].startswith("act.")
    assert standin.is_valid(token)
    assert refresh(http, standin, token).status_code == 200
    assert standin.current_refresh_token("kate") == token


def test_wrong_open_id(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("liam").refresh_token
    standin.wrong_open_id = "somebody-else"
    body = refresh(http, standin, token).json()
    assert body["open_id"] == "somebody-else"
    assert standin.current_refresh_token("liam") == body["refresh_token"]


def test_presented_received_and_reset_log(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("mia").refresh_token
    standin.script(Reply(500))
    refresh(http, standin, token)  # scripted 500
    new = refresh(http, standin, token).json()["refresh_token"]  # 200
    refresh(http, standin, token)  # invalid_grant
    presented = standin.presented()
    assert presented[token] == 3
    assert presented[new] == 0
    received = standin.received
    assert [r.path for r in received] == [TOKEN_PATH] * 3
    assert all(r.content_type == "application/x-www-form-urlencoded" for r in received)
    assert received[0].form == form(standin, token)
    assert received[0].at <= received[1].at <= received[2].at
    standin.reset_log()
    assert standin.received == []
    assert not standin.presented()
    standin.wait_for_requests(0)


def test_wait_for_requests(standin: TikTokStandIn) -> None:
    def later() -> None:
        time.sleep(0.05)
        with requests.Session() as session:
            refresh(session, standin, "rft.x").close()

    thread = threading.Thread(target=later)
    thread.start()
    standin.wait_for_requests(1, timeout=TIMEOUT)
    thread.join(TIMEOUT)
    with pytest.raises(TimeoutError):
        standin.wait_for_requests(2, timeout=0.05)


def test_revoke_method_and_endpoint(standin: TikTokStandIn, http: requests.Session) -> None:
    first = standin.issue("nina")
    second = standin.issue("nina")
    other = standin.issue("oscar")
    standin.revoke("nina")
    assert standin.current_refresh_token("nina") is None
    for issued in (first, second):
        assert_error(refresh(http, standin, issued.refresh_token), 400, "invalid_grant")

    revoke_form = {
        "client_key": standin.client_key,
        "client_secret": "wrong",
        "token": other.access_token,
    }
    response = http.post(standin.revoke_url, data=revoke_form, timeout=TIMEOUT)
    assert_error(response, 401, "invalid_client")
    assert standin.is_valid(other.refresh_token)
    revoke_form["client_secret"] = standin.client_secret
    response = http.post(standin.revoke_url, data=revoke_form, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == b""
    assert_error(refresh(http, standin, other.refresh_token), 400, "invalid_grant")


def test_unknown_path_is_404(standin: TikTokStandIn, http: requests.Session) -> None:
    response = http.post(standin.base_url + "/v2/oauth/token", data={}, timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}
    assert http.get(standin.token_url, timeout=TIMEOUT).status_code == 404


def test_keep_alive_reuses_one_connection(standin: TikTokStandIn, http: requests.Session) -> None:
    token = standin.issue("pia").refresh_token
    for _ in range(5):
        token = refresh(http, standin, token).json()["refresh_token"]
    assert standin.accepted_connections == 1


def test_latency_sleeps_outside_the_lock(standin: TikTokStandIn) -> None:
    standin.latency = 0.2
    tokens = [standin.issue(f"lat{i}").refresh_token for i in range(20)]
    statuses: list[int] = []
    lock = threading.Lock()

    def use(token: str) -> None:
        with requests.Session() as session:
            status = refresh(session, standin, token).status_code
        with lock:
            statuses.append(status)

    started = time.monotonic()
    threads = [threading.Thread(target=use, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    assert 0.2 <= elapsed < 1.5


def test_stop_is_prompt_with_sleeping_and_idle_handlers() -> None:
    server = TikTokStandIn().start()
    url = server.token_url
    idle = requests.Session()
    try:
        refresh(idle, server, "rft.x").close()  # leaves an idle keep-alive connection
        server.script(Reply(200, delay=5.0))
        errors: list[BaseException] = []

        def slow() -> None:
            with requests.Session() as session:
                try:
                    refresh(session, server, "rft.y", timeout=0.3)
                except requests.RequestException as exc:
                    errors.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        server.wait_for_requests(2, timeout=TIMEOUT)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        thread.join(TIMEOUT)
        assert len(errors) == 1
        with pytest.raises(requests.ConnectionError):
            requests.post(url, data={}, timeout=1).close()
        server.stop()  # idempotent
    finally:
        idle.close()
        server.stop()


CLIENT = """
import sys, requests
url, key, secret, token, n = sys.argv[1:6]
with requests.Session() as s:
    for _ in range(int(n)):
        r = s.post(url, data={"client_key": key, "client_secret": secret,
                              "grant_type": "refresh_token", "refresh_token": token}, timeout=5)
        r.raise_for_status()
        token = r.json()["refresh_token"]
print(token)
"""


def test_several_client_processes(standin: TikTokStandIn) -> None:
    standin.latency = 0.005
    issued: list[IssuedTokens] = [standin.issue(f"proc{i}") for i in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT,
                standin.token_url,
                standin.client_key,
                standin.client_secret,
                tokens.refresh_token,
                "15",
            ],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent,
        )
        for tokens in issued
    ]
    for proc, tokens in zip(procs, issued, strict=True):
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert out.decode().strip() == standin.current_refresh_token(tokens.open_id)
        assert standin.refresh_count(tokens.open_id) == 15
    assert len(standin.received) == 45


# ----------------------------------------------------------------------------- consent

REDIRECT = "http://127.0.0.1:8765/callback"
VERIFIER = "v" * 20 + "-._~" + "0123456789" * 4  # 64 unreserved characters


def exchange(
    http: requests.Session, standin: TikTokStandIn, code: str, /, **overrides: str | None
) -> requests.Response:
    data: dict[str, str | None] = {
        "client_key": standin.client_key,
        "client_secret": standin.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
    }
    data.update(overrides)
    sent = {key: value for key, value in data.items() if value is not None}
    return http.post(standin.token_url, data=sent, timeout=TIMEOUT)


def revoke_token(
    http: requests.Session, standin: TikTokStandIn, access_token: str, secret: str | None = None
) -> requests.Response:
    data = {
        "client_key": standin.client_key,
        "client_secret": secret or standin.client_secret,
        "token": access_token,
    }
    return http.post(standin.revoke_url, data=data, timeout=TIMEOUT)


def test_a_code_is_exchanged_once_for_a_working_pair(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    code = standin.authorize("quinn", redirect_uri=REDIRECT, scope="user.info.basic")
    assert "*" in code
    assert "!" in code
    assert standin.issued_codes == [code]
    assert standin.is_code_pending(code)

    response = exchange(http, standin, code)
    body = assert_grant(response)
    assert body["open_id"] == "quinn"
    assert body["scope"] == "user.info.basic"
    assert (body["expires_in"], body["refresh_expires_in"]) == (7200, 15_552_000)
    assert standin.current_refresh_token("quinn") == body["refresh_token"]
    assert {body["access_token"], body["refresh_token"]} <= set(standin.issued_tokens)
    assert not standin.is_code_pending(code)
    assert standin.exchange_count() == standin.exchange_count("quinn") == 1
    assert standin.refresh_count() == 0
    # The code arrived form-encoded and decoded back to itself.
    assert b"%2A%21" in standin.received[0].body
    assert standin.received[0].form["code"] == code

    again = assert_error(exchange(http, standin, code), 400, "invalid_grant")
    assert again["error_description"] == "Authorization code has already been used."
    assert standin.exchange_count() == 1
    assert refresh(http, standin, body["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    ("change", "description"),
    [
        pytest.param({"code": "never-issued*!0"}, "Authorization code is invalid.", id="unknown"),
        pytest.param(
            {"redirect_uri": REDIRECT + "/"},
            "redirect_uri does not match the one of the authorization request.",
            id="redirect-with-slash",
        ),
        pytest.param(
            {"redirect_uri": None},
            "redirect_uri does not match the one of the authorization request.",
            id="redirect-missing",
        ),
    ],
)
def test_a_failed_exchange_is_invalid_grant_and_spends_the_code(
    standin: TikTokStandIn, http: requests.Session, change: dict[str, str | None], description: str
) -> None:
    code = standin.authorize("rosa", redirect_uri=REDIRECT)
    body = assert_error(exchange(http, standin, code, **change), 400, "invalid_grant")
    assert body["error_description"] == description
    issued = standin.issued_tokens
    if "code" not in change:  # the attempt spent the real code: the right one fails now too
        assert not standin.is_code_pending(code)
        used = assert_error(exchange(http, standin, code), 400, "invalid_grant")
        assert used["error_description"] == "Authorization code has already been used."
    assert standin.issued_tokens == issued
    assert standin.exchange_count() == 0


def test_an_expired_code_and_a_200_invalid_grant(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    standin.code_ttl = 0.0
    standin.invalid_grant_status = 200
    code = standin.authorize("sam", redirect_uri=REDIRECT)
    body = assert_error(exchange(http, standin, code), 200, "invalid_grant")
    assert body["error_description"] == "Authorization code has expired."
    assert not standin.is_code_pending(code)


def test_wrong_app_credentials_leave_the_code_unspent(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    code = standin.authorize("tess", redirect_uri=REDIRECT)
    assert_error(exchange(http, standin, code, client_secret="nope"), 401, "invalid_client")
    response = http.post(standin.token_url, json={"code": code}, timeout=TIMEOUT)
    assert_error(response, 400, "invalid_request")
    assert standin.is_code_pending(code)
    assert exchange(http, standin, code).status_code == 200


@pytest.mark.parametrize("encoding", ["hex", "base64url"])
def test_pkce_right_wrong_and_missing_verifier(
    standin: TikTokStandIn, http: requests.Session, encoding: Literal["hex", "base64url"]
) -> None:
    challenge = challenge_of(VERIFIER, encoding)
    assert challenge == (
        hashlib.sha256(VERIFIER.encode()).hexdigest()
        if encoding == "hex"
        else base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest())
        .decode()
        .rstrip("=")
    )
    codes = [
        standin.authorize(
            "uma", redirect_uri=REDIRECT, code_challenge=challenge, challenge_encoding=encoding
        )
        for _ in range(4)
    ]
    # The challenge in the other encoding than the one checked (with hex checked: what
    # integrations report of a base64url challenge at TikTok's desktop flow).
    other: Literal["hex", "base64url"] = "hex" if encoding == "base64url" else "base64url"
    other_code = standin.authorize(
        "uma",
        redirect_uri=REDIRECT,
        code_challenge=challenge_of(VERIFIER, other),
        challenge_encoding=encoding,
    )

    missing = assert_error(exchange(http, standin, codes[0]), 400, "invalid_grant")
    assert missing["error_description"] == "Code verifier is required."
    wrong = exchange(http, standin, codes[1], code_verifier=VERIFIER[:-1] + "x")
    assert assert_error(wrong, 400, "invalid_grant")["error_description"] == (
        "Code verifier or code challenge is invalid."
    )
    crossed = exchange(http, standin, other_code, code_verifier=VERIFIER)
    assert assert_error(crossed, 400, "invalid_grant")["error_description"] == (
        "Code verifier or code challenge is invalid."
    )
    assert standin.exchange_count() == 0
    assert exchange(http, standin, codes[2], code_verifier=VERIFIER).status_code == 200
    # Without a challenge, a verifier is not asked for (TikTok's web flow).
    plain = standin.authorize("uma", redirect_uri=REDIRECT)
    assert exchange(http, standin, plain).status_code == 200
    assert standin.exchange_count("uma") == 2
    assert standin.is_code_pending(codes[3])


def test_concurrent_exchanges_of_one_code_exactly_one_wins(standin: TikTokStandIn) -> None:
    for round_ in range(8):
        code = standin.authorize(f"racer{round_}", redirect_uri=REDIRECT)
        n = 2 + round_ % 3
        assert race(exchange, standin, code, n) == [200] + [400] * (n - 1)
    assert standin.exchange_count() == 8
    assert len(standin.issued_tokens) == 16


def test_scripts_slow_and_consume_find_the_owner_of_a_code(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    code = standin.authorize("vera", redirect_uri=REDIRECT)
    standin.script(tiktok_error("server_error", status=503), open_id="vera")
    assert_error(exchange(http, standin, code), 503, "server_error")
    assert standin.is_code_pending(code)  # a scripted answer alone spends nothing

    standin.script(Reply(504, body="<html>gateway timeout</html>", consume=True), open_id="vera")
    assert exchange(http, standin, code).status_code == 504
    assert not standin.is_code_pending(code)
    assert standin.lost_exchange_count("vera") == 1
    assert standin.exchange_count() == 0
    lost = standin.current_refresh_token("vera")
    assert lost is not None  # the pair exists, nobody learnt it

    second = standin.authorize("vera", redirect_uri=REDIRECT)
    standin.slow["vera"] = 0.2
    started = time.monotonic()
    assert exchange(http, standin, second).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_twists_apply_to_exchanges(standin: TikTokStandIn, http: requests.Session) -> None:
    code = standin.authorize("wade", redirect_uri=REDIRECT)
    standin.twist("wade", lambda payload: (200, {**payload, "refresh_token": None}))
    body = exchange(http, standin, code).json()
    assert body["refresh_token"] is None
    assert standin.current_refresh_token("wade") is not None  # the real pair was issued
    assert standin.exchange_count("wade") == 1


def test_revoke_ends_every_token_of_the_user_and_only_once(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    first = standin.issue("xena")
    second = standin.issue("xena")
    other = standin.issue("yuri")
    response = revoke_token(http, standin, first.access_token)
    assert response.status_code == 200
    assert response.content == b""
    assert standin.revoke_count() == standin.revoke_count("xena") == 1
    for tokens in (first, second):
        assert not standin.is_valid(tokens.refresh_token)
        assert standin.access_revoked(tokens.access_token)
    assert standin.is_valid(other.refresh_token)
    assert not standin.access_revoked(other.access_token)

    for token in (first.access_token, second.access_token):
        body = assert_error(revoke_token(http, standin, token), 400, "invalid_grant")
        assert body["error_description"] == "Access token is invalid or has been revoked."
    standin.revoke_invalid_status = 401
    assert_error(revoke_token(http, standin, first.access_token), 401, "invalid_grant")
    assert standin.revoke_count() == 1

    # Tokens issued after the revoke (a new consent) work, and can be revoked in turn.
    third = standin.issue("xena")
    assert not standin.access_revoked(third.access_token)
    assert revoke_token(http, standin, third.access_token).status_code == 200
    # A token never issued: 200, and nothing happens (as before).
    assert revoke_token(http, standin, "act.never-issued").content == b""
    assert standin.revoke_count() == 2
    assert standin.is_valid(other.refresh_token)


def test_revoke_checks_the_app_first_and_obeys_scripts(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    tokens = standin.issue("zed")
    assert_error(revoke_token(http, standin, tokens.access_token, "wrong"), 401, "invalid_client")
    assert not standin.access_revoked(tokens.access_token)
    standin.script(Reply(500), open_id="zed")
    assert revoke_token(http, standin, tokens.access_token).status_code == 500
    assert not standin.access_revoked(tokens.access_token)
    standin.script(Reply(502, consume=True), open_id="zed")
    assert revoke_token(http, standin, tokens.access_token).status_code == 502
    assert standin.access_revoked(tokens.access_token)
    assert not standin.is_valid(tokens.refresh_token)
    standin.revoke("zed")  # the user's side: access tokens go too
    again = standin.issue("zed")
    standin.revoke("zed")
    assert standin.access_revoked(again.access_token)


def test_register_accepts_given_tokens_once_then_rotates_them(
    standin: TikTokStandIn, http: requests.Session
) -> None:
    given = standin.register(
        "sample-user",
        access_token="act.sample-access-0001",
        refresh_token="rft.sample-refresh-0001",
    )
    assert given.refresh_token == "rft.sample-refresh-0001"
    assert standin.is_valid("rft.sample-refresh-0001")
    assert standin.current_refresh_token("sample-user") == "rft.sample-refresh-0001"
    answer = refresh(http, standin, "rft.sample-refresh-0001")
    assert answer.status_code == 200
    assert answer.json()["open_id"] == "sample-user"
    assert answer.json()["refresh_token"] != "rft.sample-refresh-0001"
    assert_error(refresh(http, standin, "rft.sample-refresh-0001"), 400, "invalid_grant")
    with pytest.raises(ValueError, match="already knows"):
        standin.register(
            "other", access_token="act.other-0001", refresh_token="rft.sample-refresh-0001"
        )
    # Revoking the user makes a registered pair fail like an issued one.
    standin.register("gone-user", access_token="act.gone-0001", refresh_token="rft.gone-0001")
    standin.revoke("gone-user")
    assert_error(refresh(http, standin, "rft.gone-0001"), 400, "invalid_grant")


def test_a_given_port_is_used(http: requests.Session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with TikTokStandIn(port=port) as server:
        assert server.port == port
        issued = server.issue("on-a-port")
        assert refresh(http, server, issued.refresh_token).status_code == 200
