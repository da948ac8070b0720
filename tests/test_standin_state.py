"""examples/standin.py as a real process: with --state it keeps the tokens it issued across
a restart (SIGTERM, then start again with the same file), so accounts refreshed before
still refresh; without it, the sample file's spent tokens are all it knows."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin_consent import DEMO_OPEN_ID

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "standin.py"
ACCOUNTS = ROOT / "examples" / "accounts.jsonl"
DEMO = {"client_key": "demo-client-key", "client_secret": "demo-client-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Running:
    """One examples/standin.py process, started and waited for its first line."""

    def __init__(self, port: int, *args: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(port), str(ACCOUNTS), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        # Generous: on a loaded CI machine the server's shutdown once took over 10 s.
        self.process.wait(timeout=60)
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        # Through the buffered files: readline() may have buffered more than one line.
        output = self.first_line + self.process.stdout.read() + self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return self.process.returncode, output

    def refresh(self, refresh_token: str) -> requests.Response:
        form = {**DEMO, "grant_type": "refresh_token", "refresh_token": refresh_token}
        return requests.post(f"{self.url}/v2/oauth/token/", data=form, timeout=5)


@pytest.fixture
def start() -> Iterator[type[Running]]:
    started: list[Running] = []

    def run(*args: str) -> Running:
        running = Running(free_port(), *args)
        started.append(running)
        assert running.first_line.startswith("TikTok stand-in on "), running.stop()
        return running

    yield run  # type: ignore[misc]
    for running in started:
        if running.process.poll() is None:
            running.stop()


def sample_refresh_token(open_id: str) -> str:
    for line in ACCOUNTS.read_text(encoding="utf-8").splitlines():
        if json.loads(line)["open_id"] == open_id:
            return str(json.loads(line)["refresh_token"])
    raise LookupError(open_id)


def test_a_restart_with_the_state_keeps_the_rotated_tokens(
    start: type[Running], tmp_path: Path
) -> None:
    state = tmp_path / "standin.json"
    first = start("--state", str(state))
    answer = first.refresh(sample_refresh_token("demo-shop-berlin"))
    assert answer.status_code == 200, answer.text
    rotated = answer.json()["refresh_token"]
    assert first.stop()[0] == 0

    second = start("--state", str(state))
    assert f"Its tokens are kept in {state} (tokens restored from it)" in second.stop()[1]
    third = start("--state", str(state))
    again = third.refresh(rotated)
    assert again.status_code == 200, again.text
    assert again.json()["open_id"] == "demo-shop-berlin"
    spent = third.refresh(sample_refresh_token("demo-shop-berlin"))
    assert spent.json()["error"] == "invalid_grant"
    rejected = third.refresh(sample_refresh_token("rejected-old-consent"))
    assert rejected.json()["error"] == "invalid_grant"  # still revoked at "TikTok"
    untouched = third.refresh(sample_refresh_token("demo-cafe-lisbon"))
    assert untouched.status_code == 200, untouched.text


def test_without_the_state_the_rotated_token_is_unknown(
    start: type[Running], tmp_path: Path
) -> None:
    first = start()
    rotated = first.refresh(sample_refresh_token("demo-shop-berlin")).json()["refresh_token"]
    first.stop()
    second = start()
    answer = second.refresh(rotated)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert list(tmp_path.iterdir()) == []


def test_the_state_file_is_private_and_holds_only_demo_tokens(
    start: type[Running], tmp_path: Path
) -> None:
    state = tmp_path / "standin.json"
    running = start("--state", str(state))
    rotated = running.refresh(sample_refresh_token("demo-cafe-lisbon")).json()["refresh_token"]
    # written after the call, before any stop: a kill -9 loses nothing
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    kept = json.loads(state.read_text(encoding="utf-8"))
    assert kept["valid"][rotated] == ["demo-cafe-lisbon", "user.info.basic,video.publish"]
    assert "demo-client-secret" not in state.read_text(encoding="utf-8")
    assert sorted(kept) == [
        "access_owner",
        "newest",
        "refresh_owner",
        "revoked_access",
        "valid",
        "version",
    ]
    assert running.stop()[0] == 0
    assert [path.name for path in tmp_path.iterdir()] == ["standin.json"]  # no temporary left


def test_a_connected_account_survives_a_restart(start: type[Running], tmp_path: Path) -> None:
    state = tmp_path / "standin.json"
    running = start("--state", str(state))
    callback = "http://127.0.0.1:8766/callback"
    query = {
        "client_key": "demo-client-key",
        "response_type": "code",
        "state": "s",
        "redirect_uri": callback,
    }
    consent = requests.get(
        f"{running.url}/v2/auth/authorize/", params=query, allow_redirects=False, timeout=5
    )
    code = requests.utils.unquote(consent.headers["Location"].split("code=")[1].split("&")[0])
    form = {**DEMO, "grant_type": "authorization_code", "code": code, "redirect_uri": callback}
    tokens = requests.post(f"{running.url}/v2/oauth/token/", data=form, timeout=5).json()
    assert tokens["open_id"] == DEMO_OPEN_ID
    running.stop()
    again = start("--state", str(state)).refresh(tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["open_id"] == DEMO_OPEN_ID


def test_a_state_file_it_did_not_write_stops_it(tmp_path: Path) -> None:
    state = tmp_path / "standin.json"
    state.write_text('{"version": 1}', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(free_port()), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(os.environ),
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"standin.py: {state} is not a state of this stand-in: a part is missing; "
        "remove it to start afresh\n"
    )
    assert state.read_text(encoding="utf-8") == '{"version": 1}'
