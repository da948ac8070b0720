"""No control character, bidi override or rich markup from outside reaches a terminal.

Hostile text is written straight into the database (labels, open_ids, scopes, last_error,
attempts, runs), as a compromised import file, a strange TikTok answer or a hand-edited row
would leave it, then every reporting command is run on it: human output shows it escaped
(`\\x1b`) and literally (markup), JSON parses back to exactly what is stored, and log lines
are one scrubbed, escaped line each.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from conftest import Cli
from standin import IssuedTokens, TikTokStandIn, tiktok_error
from tokenrefresh.base.clock import utcnow
from tokenrefresh.base.logs import configure_logging
from tokenrefresh.base.scrub import MASK, register_secret, safe_text
from tokenrefresh.render import renderer
from tokenrefresh.render.terminal import Terminal as TerminalOutput
from tokenrefresh.services.accounts import Accounts
from tokenrefresh.services.refresh.plan import Plan, RefreshOptions
from tokenrefresh.services.status import collect_status
from tokenrefresh.storage.models import Account, AccountStatus, Attempt, Run
from tokenrefresh.storage.repository import Repository

# What must never reach a terminal raw: C0 (but newline), DEL, C1, bidi overrides and
# isolates, the Unicode line and paragraph separators.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
# The styles rich itself writes on a colour terminal (bold, dim, italic, reset): nothing
# from outside uses these, the hostile text below uses other SGR codes.
RICH_STYLES = re.compile("\x1b\\[[0-4](?:;[0-4])*m")

LINK = "[link=https://evil.example]Shop[/link]"
HOSTILE = {
    "label": f"{LINK} [/] :warning: \x1b[2J\x1b[H\u202eevil",
    "open_id": "open\x1b]8;;https://evil.example\x07id\x1b]8;;\x07-\x9b31m-[bold]x",
    "scope": "user.info\x07\x7f[/]",
    "last_error": "TikTok: \x1b[31mred\x1b[0m \x9d0;t\x9c \u2066iso\u2069\nnext\u2028sep\r",
    "expired_label": "[/]\x1b[5mblink\u2067",
    "expired_open_id": "gone\x1b[8m\x85id",
    "error_code": "invalid\x1b[5m_grant\u202e",
    "log_id": "log\x9b2J\x08\x08id",
    "attempt_message": "TikTok said: \x1b]52;c;ZXZpbA==\x07 [link=x]y[/link]",
    "run_message": "stopped: \x1b[2J\u202e[/]",
    "run_host": "host\x1b[8m\x85name",
    "running_host": "[/]other\x1b[7mhost",
    "count_name": "evil\x1b[2J",
}


def assert_terminal_safe(text: str) -> None:
    found = UNSAFE.search(text)
    assert found is None, (found, text)


def shown(key: str) -> str:
    """How a hostile value looks on a terminal: escaped, never interpreted."""
    return safe_text(HOSTILE[key])


@pytest.fixture
def hostile(
    cli: Cli, add_accounts: Callable[..., list[IssuedTokens]], engine: Engine
) -> dict[str, int]:
    """Three imported accounts made hostile with SQL: user0 due and failing, user1 expired,
    user2 untouched; an attempt and two runs with hostile text. Returns the ids."""
    add_accounts(3)
    now = utcnow()
    with engine.begin() as connection:
        ids = dict(connection.execute(select(Account.open_id, Account.id)).all())
        hostile_rows = {
            "user0": {
                "label": HOSTILE["label"],
                "open_id": HOSTILE["open_id"],
                "scope": HOSTILE["scope"],
                "last_error": HOSTILE["last_error"],
                "consecutive_failures": 1,
            },
            "user1": {
                "label": HOSTILE["expired_label"],
                "open_id": HOSTILE["expired_open_id"],
                "status": AccountStatus.EXPIRED.value,
                "last_error": HOSTILE["last_error"],
            },
        }
        for open_id, values in hostile_rows.items():
            connection.execute(update(Account).where(Account.open_id == open_id).values(**values))
        run_id = connection.execute(
            insert(Run)
            .values(
                command="refresh",
                host=HOSTILE["run_host"],
                pid=4242,
                shard=None,
                started_at=now - timedelta(minutes=5),
                finished_at=now - timedelta(minutes=4),
                outcome="ok",
                exit_code=0,
                counts=json.dumps({"refreshed": 1, HOSTILE["count_name"]: 2}),
                message=HOSTILE["run_message"],
            )
            .returning(Run.id)
        ).scalar_one()
        connection.execute(
            insert(Run).values(
                command="cleanup",
                host=HOSTILE["running_host"],
                pid=4343,
                started_at=now - timedelta(minutes=1),
                counts="{}",
            )
        )
        connection.execute(
            insert(Attempt).values(
                account_id=ids["user0"],
                run_id=run_id,
                attempted_at=now - timedelta(minutes=4),
                outcome="failed",
                http_status=400,
                error_code=HOSTILE["error_code"],
                log_id=HOSTILE["log_id"],
                duration_ms=12,
                message=HOSTILE["attempt_message"],
            )
        )
    return {"due": ids["user0"], "expired": ids["user1"], "plain": ids["user2"]}


# ----------------------------------------------------------------------------- plain text


def test_accounts_list_shows_hostile_text_escaped(cli: Cli, hostile: dict[str, int]) -> None:
    result = cli("accounts", "list")
    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stdout + result.stderr)
    for key in ("label", "open_id", "expired_label", "expired_open_id"):
        assert shown(key) in result.stdout, key
    assert LINK in result.stdout
    assert safe_text(HOSTILE["last_error"], 60) in result.stdout
    assert len(result.stdout.splitlines()) == 2 + 3  # title, header, one line per account


def test_accounts_show_shows_hostile_text_escaped(cli: Cli, hostile: dict[str, int]) -> None:
    result = cli("accounts", "show", str(hostile["due"]))
    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stdout + result.stderr)
    for key in ("label", "open_id", "scope", "last_error", "error_code", "log_id"):
        assert shown(key) in result.stdout, key
    assert safe_text(HOSTILE["attempt_message"], 60) in result.stdout


def test_status_shows_hostile_text_escaped(cli: Cli, hostile: dict[str, int]) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stdout + result.stderr)
    for key in ("expired_label", "expired_open_id", "run_message", "running_host"):
        assert shown(key) in result.stdout, key
    assert f"{shown('count_name')} 2" in result.stdout
    assert safe_text(HOSTILE["last_error"], 80) in result.stdout


def test_status_check_is_terminal_safe(cli: Cli, hostile: dict[str, int]) -> None:
    result = cli("status", "--check")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.stdout == "WARNING: 1 account(s) need their user to reconnect\n"
    as_json = cli("status", "--check", "--json")
    assert as_json.json() == {
        "status": "warning",
        "problems": [
            {"severity": "warning", "message": "1 account(s) need their user to reconnect"}
        ],
    }


def test_dry_run_shows_hostile_text_escaped(cli: Cli, hostile: dict[str, int]) -> None:
    result = cli("refresh", "--dry-run", "--window", "3h")
    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stdout + result.stderr)
    assert shown("label") in result.stdout
    assert shown("open_id") in result.stdout


def test_refresh_problems_and_logs_show_hostile_text_escaped(
    cli: Cli, hostile: dict[str, int], standin: TikTokStandIn
) -> None:
    rejected = tiktok_error("invalid_grant", description="[/]\x1b[2J\u202egone")
    standin.script(rejected, rejected, open_id="user0")
    human = cli("refresh", "--window", "3h", "-v")
    assert human.exit_code == 1, human.stdout + human.stderr
    assert_terminal_safe(human.stdout + human.stderr)
    assert f"account {hostile['due']} ({shown('open_id')}): expired: " in human.stderr
    assert f"  account {hostile['due']} ({shown('open_id')}): expired: " in human.stdout
    assert "[/]" in human.stdout  # TikTok's text: markup shown as is

    again = ["refresh", "--account-id", str(hostile["due"]), "-v", "--log-format", "json"]
    as_json = cli(*again)
    assert as_json.exit_code == 1, as_json.stdout + as_json.stderr
    assert_terminal_safe(as_json.stdout + as_json.stderr)
    entries = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert any(f"({HOSTILE['open_id']}): expired" in entry["message"] for entry in entries)


# ----------------------------------------------------------------------------- JSON


def assert_json_safe(text: str) -> Any:
    """One line of JSON with nothing unsafe in its text; returns it parsed."""
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert_terminal_safe(text[:-1])
    return json.loads(text)


def test_accounts_json_round_trips_hostile_text(cli: Cli, hostile: dict[str, int]) -> None:
    listed = assert_json_safe(cli("accounts", "list", "--json").stdout)
    by_id = {account["id"]: account for account in listed["accounts"]}
    due = by_id[hostile["due"]]
    assert (due["label"], due["open_id"], due["scope"], due["last_error"]) == (
        HOSTILE["label"],
        HOSTILE["open_id"],
        HOSTILE["scope"],
        HOSTILE["last_error"],
    )
    assert by_id[hostile["expired"]]["open_id"] == HOSTILE["expired_open_id"]

    details = assert_json_safe(cli("accounts", "show", str(hostile["due"]), "--json").stdout)
    assert details["account"] == due
    (attempt,) = details["attempts"]
    assert (attempt["error_code"], attempt["log_id"], attempt["message"]) == (
        HOSTILE["error_code"],
        HOSTILE["log_id"],
        HOSTILE["attempt_message"],
    )


def test_status_json_round_trips_hostile_text(cli: Cli, hostile: dict[str, int]) -> None:
    data = assert_json_safe(cli("status", "--json").stdout)
    (reconnect,) = data["reconnect_needed"]["accounts"]
    assert (reconnect["label"], reconnect["open_id"], reconnect["last_error"]) == (
        HOSTILE["expired_label"],
        HOSTILE["expired_open_id"],
        HOSTILE["last_error"],
    )
    run = data["last_runs"]["refresh"]
    assert (run["host"], run["message"]) == (HOSTILE["run_host"], HOSTILE["run_message"])
    assert run["counts"] == {"refreshed": 1, HOSTILE["count_name"]: 2}
    assert data["last_runs"]["cleanup"]["host"] == HOSTILE["running_host"]


def test_dry_run_json_round_trips_hostile_text(cli: Cli, hostile: dict[str, int]) -> None:
    data = assert_json_safe(cli("refresh", "--dry-run", "--window", "3h", "--json").stdout)
    planned = {plan["account_id"]: plan for plan in data["would_refresh"]}
    assert planned[hostile["due"]]["open_id"] == HOSTILE["open_id"]
    assert planned[hostile["due"]]["label"] == HOSTILE["label"]


def test_json_escapes_what_json_dumps_leaves_raw() -> None:
    stream = io.StringIO()
    value = "c1\x85\x9b del\x7f bidi\u202a\u202e\u2066\u2069 sep\u2028\u2029 lone\ud800 ok é"
    TerminalOutput(stream).json({"text": value, "nested": [{"k\x9b": value}]})
    text = stream.getvalue()
    assert_terminal_safe(text[:-1])
    assert "\\u0085\\u009b" in text
    assert "\\u202e" in text
    assert "ok é" in text  # ordinary non-ASCII stays readable
    text.encode("utf-8")  # a lone surrogate, written raw, would fail on a real stdout
    assert json.loads(text) == {"text": value, "nested": [{"k\x9b": value}]}


def test_a_registered_secret_is_scrubbed_from_json_and_text() -> None:
    secret = "render-secret-0123456789abcdef"
    register_secret(secret)
    stream = io.StringIO()
    output = renderer(as_json=True, stream=stream)
    from tokenrefresh.services.status import HealthCheck, HealthProblem, Severity

    output.health(HealthCheck([]))  # ours: untouched
    output.health(HealthCheck([HealthProblem(Severity.WARNING, f"echo {secret[2:20]}")]))
    assert secret[2:14] not in stream.getvalue()
    plain = io.StringIO()
    renderer(as_json=False, stream=plain).health(
        HealthCheck([HealthProblem(Severity.WARNING, f"echo {secret}")])
    )
    assert plain.getvalue() == f"WARNING: echo {MASK}\n"


def test_every_line_is_scrubbed_and_escaped_whatever_its_caller_did() -> None:
    secret = "line-secret-0123456789abcdef"
    register_secret(secret)
    stream = io.StringIO()
    TerminalOutput(stream).line(f"said {secret} \x1b[2J\u202e\nnext")
    assert stream.getvalue() == f"said {MASK} \\x1b[2J\\u202e\\x0anext\n"


# ----------------------------------------------------------------------------- rich tables


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as rich sees one."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(params=["xterm-256color", "dumb"])
def terminal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Terminal:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", request.param)
    monkeypatch.setenv("COLUMNS", "1000")  # no folding: each value stays on one line
    monkeypatch.setenv("LINES", "50")  # without both, rich takes a dumb terminal for 80x25
    return Terminal()


def rich_text(terminal: Terminal) -> str:
    """What rich wrote, without the styles it adds itself; checked to be safe."""
    text = RICH_STYLES.sub("", terminal.getvalue())
    assert_terminal_safe(text)
    assert "│" in text or "┃" in text, "the rich table path was taken"
    return text


def test_rich_tables_escape_and_never_interpret_hostile_text(
    hostile: dict[str, int], engine: Engine, fernet_key: str, terminal: Terminal
) -> None:
    repository = Repository(engine)
    now = utcnow()
    output = renderer(as_json=False, stream=terminal)
    output.accounts(Accounts(repository).list(), now)
    output.account_details(Accounts(repository).details(hostile["due"], 10), now)
    output.status(collect_status(repository, now, timedelta(hours=3), 50))
    report = Plan(repository, RefreshOptions(window=timedelta(hours=3))).dry_run()
    output.refresh(report, quiet=False)
    text = rich_text(terminal)
    for key in ("label", "open_id", "expired_label", "expired_open_id", "error_code", "log_id"):
        assert shown(key) in text, key
    assert LINK in text
    assert ":warning:" in text


def test_a_rich_title_from_outside_is_literal(terminal: Terminal) -> None:
    TerminalOutput(terminal).table(
        "[/] [link=https://evil.example]t[/link] \x1b[2J",
        ["a[/]", "b"],
        [["[/]", "\x9b1m" + "-" * 60]],  # wide enough for the title to stay on one line
    )
    text = rich_text(terminal)
    assert "[/] [link=https://evil.example]t[/link] \\x1b[2J" in text
    assert "a[/]" in text
    assert "\\x9b1m" in text


def test_a_long_cell_is_bounded(terminal: Terminal) -> None:
    TerminalOutput(terminal).table("t", ["a"], [["x" * 5000]])
    text = rich_text(terminal)
    assert "x" * 199 + "…" in text
    assert "x" * 200 not in text


# ----------------------------------------------------------------------------- logs


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    configure_logging()  # back to stderr


@pytest.mark.parametrize("json_lines", [False, True], ids=["human", "json"])
def test_a_log_record_is_one_scrubbed_safe_line(log_stream: io.StringIO, json_lines: bool) -> None:
    secret = "log-secret-0123456789abcdef"
    register_secret(secret)
    configure_logging(verbose=1, json_lines=json_lines, stream=log_stream)
    log = logging.getLogger("tokenrefresh.test")
    try:
        raise ValueError(f"boom \x1b[2J {secret}\nsecond line")
    except ValueError:
        log.error(
            "account %s: %s",
            "open\x1b]8;;x\x07id",
            f"said {secret} \x9b31m\u202e\nnext",
            exc_info=True,
        )
    log.warning("plain %s", "\u2028sep\x85nel")
    text = log_stream.getvalue()
    lines = text.split("\n")
    assert lines[-1] == ""
    if json_lines:
        assert len(lines) == 3  # two records, one line each
    else:  # the message on one line, then the traceback's own lines, each one safe
        assert lines[0].startswith("error: ")
        assert lines[1] == "Traceback (most recent call last):"
        assert lines[-3] == "second line"
        assert lines[-2].startswith("warning: ")
        lines = [lines[0], lines[-2], ""]
    assert_terminal_safe(text)
    assert secret[:12] not in text
    assert secret[-12:] not in text
    if json_lines:
        error, warning = (json.loads(line) for line in lines[:2])
        assert error["message"] == f"account open\x1b]8;;x\x07id: said {MASK} \x9b31m\u202e\nnext"
        assert error["exception"].startswith("Traceback (most recent call last):\n")
        assert error["exception"].endswith(f"ValueError: boom \x1b[2J {MASK}\nsecond line")
        assert warning["message"] == "plain \u2028sep\x85nel"
    else:
        assert lines[0] == (
            f"error: account open\\x1b]8;;x\\x07id: said {MASK} \\x9b31m\\u202e\\x0anext"
        )
        assert f"ValueError: boom \\x1b[2J {MASK}\n" in text
        assert lines[1] == "warning: plain \\u2028sep\\x85nel"
