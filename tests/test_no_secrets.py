"""No token, and no part of one, in any output or log line of a full run, ever."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from helpers import leaked
from standin import Reply, TikTokStandIn, tiktok_error


@pytest.mark.slow
def test_a_full_run_with_every_outcome_leaks_nothing(
    env: dict[str, str],
    standin: TikTokStandIn,
    fernet_key: str,
    run_process: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    issued = [standin.issue(f"user{index}") for index in range(6)]
    lines = "\n".join(
        json.dumps(tokens.as_import_line(label=f"u{index}")) for index, tokens in enumerate(issued)
    )
    # A bad import line must not echo the token it carries.
    bad_line = json.dumps({**issued[0].as_import_line(), "expires_in": "soon"})
    # Outcomes: rejected, transient with the token echoed back, garbage, lost answer, ok.
    standin.script(
        tiktok_error("invalid_grant", 400, f"token {issued[1].refresh_token} is dead"),
        open_id="user1",
    )
    standin.script(
        *[tiktok_error("invalid_request", 400, f"bad refresh_token={issued[2].refresh_token}")],
        open_id="user2",
    )
    standin.script(
        *[Reply(status=502, body="<html>rft.garbage-token-looking-thing</html>")] * 3,
        open_id="user3",
    )
    standin.script(Reply(delay=1.0, consume=True), open_id="user4")

    commands = [
        (["accounts", "import", "-"], lines),
        (["accounts", "import", "-"], bad_line),
        (["accounts", "list"], None),
        (["accounts", "list", "--json"], None),
        (["refresh", "--dry-run", "--window", "3h", "--json"], None),
        (["refresh", "--window", "3h", "-vv", "--http-timeout", "0.3"], None),
        (["refresh", "--account-id", "5", "--json", "-vv", "--log-format", "json"], None),
        (["accounts", "show", "2", "--json"], None),
        (["accounts", "show", "5"], None),
        (["status"], None),
        (["status", "--json"], None),
        (["cleanup", "-vv", "--json"], None),
        (["keys", "check"], None),
        (["keys", "rotate", "--json"], None),
    ]
    outputs: list[str] = []
    codes = []
    for args, stdin in commands:
        result = run_process(*args, input=stdin)
        outputs += [result.stdout, result.stderr]
        codes.append(result.returncode)
    assert codes[0] == 0
    assert codes[1] == 2
    assert codes[5] == 1  # some accounts failed or expired
    joined = "\n".join(outputs)
    assert "debug:" in joined  # the most verbose logging was on
    assert '"run_id"' in joined  # and the JSON log format

    secrets = [*standin.issued_tokens, standin.client_secret, fernet_key]
    assert leaked(outputs, secrets) == []
    # Nothing that even looks like a TikTok token.
    assert "act." not in joined.replace("react.", "")
    assert "rft." not in joined


def test_the_leak_detector_finds_a_fragment() -> None:
    token = "rft.abcdefghijklmnopqrstuvwxyz0123456789"
    assert leaked([f"log line with {token[10:30]} inside"], [token]) != []
    assert leaked(["log line without it"], [token]) == []
