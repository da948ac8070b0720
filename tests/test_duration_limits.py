"""Every DURATION option and its variable has one maximum (3650d): beyond it, a usage
error (exit 2) that names the option and changes nothing; at it, the command works as
with any other value (no OverflowError anywhere in the date arithmetic, on either
database)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from conftest import Cli
from helpers import snapshot
from standin import TikTokStandIn

# (the command's words, the option, its variable)
DURATION_OPTIONS: list[tuple[tuple[str, ...], str, str | None]] = [
    (("refresh",), "--window", "TOKENREFRESH_WINDOW"),
    (("refresh",), "--max-runtime", "TOKENREFRESH_MAX_RUNTIME"),
    (("refresh",), "--warn-before", "TOKENREFRESH_WARN_BEFORE"),
    (("refresh",), "--event-retention", "TOKENREFRESH_EVENT_RETENTION"),
    (("cleanup",), "--retention", "TOKENREFRESH_RETENTION"),
    (("cleanup",), "--event-retention", "TOKENREFRESH_EVENT_RETENTION"),
    (("status",), "--window", "TOKENREFRESH_WINDOW"),
    (("status", "--check"), "--max-age", "TOKENREFRESH_MAX_AGE"),
    (("events", "deliver"), "--event-retention", "TOKENREFRESH_EVENT_RETENTION"),
    (("accounts", "token", "1"), "--min-valid", None),
]
IDS = [f"{' '.join(words)} {option}" for words, option, _ in DURATION_OPTIONS]
TOO_LONG = ["3651d", "3650d1s", "99999999d", "99999999999999999999d", "87601h"]


# The options that take a DURATION or a bare number of seconds, with maximums of their own
# (`--http-timeout` 60s): their limits are in test_cli_options.py.
SECONDS_OPTIONS = {
    ("refresh", "--http-timeout"),
    ("accounts", "--http-timeout"),
    ("events", "--budget"),
}


def refused(option: str, variable: str | None, value: str) -> str:
    """Click's usage error, last line: the option (or the variable the value came from),
    the value, the maximum."""
    where = f"{variable} (the environment variable for '{option}')" if variable else f"'{option}'"
    return (
        f"Error: Invalid value for {where}: '{value}' is longer than the maximum, 3650d (10 years)"
    )


@pytest.mark.parametrize(("words", "option", "variable"), DURATION_OPTIONS, ids=IDS)
def test_a_duration_beyond_the_maximum_is_a_usage_error_naming_the_option(
    cli: Cli,
    add_accounts: Any,
    engine: Engine,
    standin: TikTokStandIn,
    words: tuple[str, ...],
    option: str,
    variable: str | None,
) -> None:
    add_accounts(2)
    before = snapshot(engine)
    for value in TOO_LONG:
        given = cli(*words, option, value)
        assert given.exit_code == 2, (value, given.stderr)
        assert given.stderr.rstrip("\n").splitlines()[-1] == refused(option, None, value)
        assert given.stdout == ""
        if variable is not None:
            from_environment = cli(*words, env={variable: value})
            assert from_environment.exit_code == 2, (value, from_environment.stderr)
            last = from_environment.stderr.rstrip("\n").splitlines()[-1]
            assert last == refused(option, variable, value)
    assert standin.received == []
    assert snapshot(engine) == before


def test_every_duration_option_is_listed_here(cli: Cli) -> None:
    """A new DURATION option must join DURATION_OPTIONS (and so these tests)."""
    listed = {(words[0], option) for words, option, _ in DURATION_OPTIONS} | SECONDS_OPTIONS
    found = set()
    for words in (
        ("refresh",),
        ("cleanup",),
        ("status",),
        ("events", "deliver"),
        ("accounts", "token"),
    ):
        lines = cli(*words, "--help").stdout.splitlines()
        found |= {
            (words[0], line.split()[0])
            for line in lines
            if line.strip().startswith("--") and " DURATION" in line
        }
    assert found == listed


AT_THE_MAXIMUM: list[tuple[tuple[str, ...], int]] = [
    (("refresh", "--window", "3650d", "--json"), 0),
    (("refresh", "--max-runtime", "3650d", "--json"), 0),
    (("refresh", "--warn-before", "3650d", "--json"), 0),
    (("refresh", "--event-retention", "3650d", "--json"), 0),
    (("cleanup", "--retention", "3650d", "--event-retention", "3650d", "--json"), 0),
    (("status", "--window", "3650d", "--json"), 0),
    (("status", "--check", "--max-age", "3650d", "--json"), 0),
    (("events", "deliver", "--event-retention", "3650d", "--json"), 0),
]


@pytest.mark.parametrize(
    ("args", "exit_code"), AT_THE_MAXIMUM, ids=[" ".join(a[:3]) for a, _ in AT_THE_MAXIMUM]
)
def test_the_maximum_itself_works_and_prints_its_document(
    cli: Cli, add_accounts: Any, args: tuple[str, ...], exit_code: int
) -> None:
    add_accounts(2)
    if args[0] == "status":  # a refresh first, so that --check has one to judge
        assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    result = cli(*args)
    assert result.exit_code == exit_code, result.stderr
    assert result.stderr == ""
    assert isinstance(result.json(), dict)


def test_refresh_warn_before_at_the_maximum_announces_every_refresh_token(
    cli: Cli, add_accounts: Any
) -> None:
    add_accounts(2)
    result = cli("refresh", "--warn-before", "3650d", "--window", "3h", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["refreshed"] == 2
    events = cli("events", "list", "--json").json()["events"]
    assert sorted(e["type"] for e in events) == ["account.refresh_token_expiring"] * 2


def test_accounts_token_min_valid_at_the_maximum_refreshes_then_says_no_token_lasts_so_long(
    cli: Cli, add_accounts: Any, standin: TikTokStandIn
) -> None:
    [issued] = add_accounts(1)
    result = cli("accounts", "token", "1", "--min-valid", "3650d")
    assert result.stdout == ""
    assert result.exit_code == 2, result.stderr  # MinValidUnreachable: asked for too much
    assert result.stderr.startswith("error: account 1 (user0) was refreshed at ")
    assert "TikTok's access tokens last 2h; asked for 3650d." in result.stderr
    assert "unexpected" not in result.stderr
    assert standin.presented() == {issued.refresh_token: 1}
