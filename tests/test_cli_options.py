"""Options on the command line: `--http-timeout` and `events deliver --budget` take a
duration or, as before durations, a bare number of seconds; a usage error names the option
when its value came from the command line, the variable when it came from the environment
(issue 18 item 7)."""

from __future__ import annotations

import pytest
import typer
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, attempts
from standin import Reply, TikTokStandIn
from tokenrefresh.cli.options import seconds_parser

NOT_SECONDS = "is not a duration: use e.g. 20s, 1m30s, or a number of seconds (20, 0.5)"
USAGE = "Usage: tokenrefresh refresh [OPTIONS]\nTry 'tokenrefresh refresh --help' for help.\n\n"


# ----------------------------------------------------------------------------- seconds


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("20s", 20.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("20", 20.0),  # a bare number: seconds, as the option took before durations
        ("0.5", 0.5),
        (" .25 ", 0.25),
    ],
)
def test_a_seconds_option_takes_a_duration_or_a_bare_number_of_seconds(
    given: str, seconds: float
) -> None:
    assert seconds_parser(0.1, 600)(given) == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0.05", "'0.05' is less than the minimum, 0.1s"),
        ("11m", "'11m' is more than the maximum, 600s"),
        ("500ms", f"'500ms' {NOT_SECONDS}"),  # the smallest unit is the second
        ("1.5s", f"'1.5s' {NOT_SECONDS}"),
        ("-1", f"'-1' {NOT_SECONDS}"),
        ("inf", f"'inf' {NOT_SECONDS}"),
        ("1e3", f"'1e3' {NOT_SECONDS}"),
        ("9" * 20, f"'{'9' * 20}' is longer than the maximum, 3650d (10 years)"),
        ("3651d", "'3651d' is longer than the maximum, 3650d (10 years)"),
    ],
)
def test_a_seconds_option_refuses_what_is_not_seconds(given: str, message: str) -> None:
    with pytest.raises(typer.BadParameter) as refused:
        seconds_parser(0.1, 600)(given)
    assert refused.value.message == message


@pytest.mark.parametrize(
    ("args", "variables", "within"),
    [
        (("--http-timeout", "1s"), None, "1 s"),
        ((), {"TOKENREFRESH_HTTP_TIMEOUT": "1s"}, "1 s"),
        (("--http-timeout", "0.5"), None, "0.5 s"),  # scripts written before durations
        ((), {"TOKENREFRESH_HTTP_TIMEOUT": "0.5"}, "0.5 s"),
    ],
    ids=["option-duration", "env-duration", "option-seconds", "env-seconds"],
)
def test_the_http_timeout_given_is_the_one_a_call_gets(
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
    args: tuple[str, ...],
    variables: dict[str, str] | None,
    within: str,
) -> None:
    add_accounts(1)
    standin.script(Reply(delay=1.5, consume=False), open_id="user0")
    result = cli("refresh", "--window", "3h", "-q", *args, env=variables)
    assert result.exit_code == 0, result.stderr
    [timed_out, refreshed] = attempts(engine, account(engine, "user0")["id"])
    assert timed_out["message"] == (
        f"no complete answer from TikTok within {within} (the token may have been rotated)"
    )
    assert refreshed["outcome"] == "refreshed"


def test_events_deliver_takes_its_budget_as_a_duration_or_seconds(cli: Cli) -> None:
    for budget in ("10s", "2m", "10", "0.5"):
        result = cli("events", "deliver", "-q", "--budget", budget)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    refused = cli("events", "deliver", "--budget", "0.05")
    assert refused.exit_code == 2
    assert refused.stderr.endswith(
        "Error: Invalid value for '--budget': '0.05' is less than the minimum, 0.1s\n"
    )
    assert "[default: 60s]" in cli("events", "deliver", "--help").stdout


# ----------------------------------------------------------------------------- usage errors


def test_a_bad_http_timeout_on_the_command_line_names_the_option_only(cli: Cli) -> None:
    for env in (None, {"TOKENREFRESH_HTTP_TIMEOUT": "20s"}):  # the variable set, and good
        result = cli("refresh", "--dry-run", "--http-timeout", "61s", env=env)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr == (
            f"{USAGE}Error: Invalid value for '--http-timeout': '61s' is more than the "
            "maximum, 60s\n"
        )


def test_a_bad_http_timeout_from_the_environment_names_the_variable(cli: Cli) -> None:
    result = cli("refresh", "--dry-run", env={"TOKENREFRESH_HTTP_TIMEOUT": "0.05"})
    assert result.exit_code == 2
    assert result.stderr == (
        f"{USAGE}Error: Invalid value for TOKENREFRESH_HTTP_TIMEOUT (the environment variable "
        "for '--http-timeout'): '0.05' is less than the minimum, 0.1s\n"
    )
    # The commands under `accounts` (another group) name it the same way.
    revoke = cli("accounts", "revoke", "7", "--yes", env={"TOKENREFRESH_HTTP_TIMEOUT": "abc"})
    assert revoke.exit_code == 2
    assert revoke.stderr.endswith(
        "Error: Invalid value for TOKENREFRESH_HTTP_TIMEOUT (the environment variable for "
        "'--http-timeout'): 'abc' is not a duration: use e.g. 20s, 1m30s, or a number of "
        "seconds (20, 0.5)\n"
    )


def test_a_bad_duration_names_the_option_or_the_variable_it_came_from(cli: Cli) -> None:
    no_unit = "'90' has no unit: write 90s for seconds or 90m for minutes (units: d, h, m, s)"
    from_option = cli("refresh", "--dry-run", "--window", "90")
    assert from_option.exit_code == 2
    assert from_option.stderr == f"{USAGE}Error: Invalid value for '--window': {no_unit}\n"
    # The variable set (to a good value) and the option given: the option is at fault.
    both = cli("refresh", "--dry-run", "--window", "90", env={"TOKENREFRESH_WINDOW": "2h"})
    assert both.stderr == from_option.stderr
    from_env = cli("refresh", "--dry-run", env={"TOKENREFRESH_WINDOW": "90"})
    assert from_env.exit_code == 2
    assert from_env.stderr == (
        f"{USAGE}Error: Invalid value for TOKENREFRESH_WINDOW (the environment variable for "
        f"'--window'): {no_unit}\n"
    )


def test_a_number_out_of_range_names_where_it_came_from(cli: Cli) -> None:
    """Typer's own checks (here `min=1`) get the same treatment as the parsers' errors."""
    from_option = cli("refresh", "--dry-run", "--concurrency", "0")
    assert from_option.exit_code == 2
    assert "Error: Invalid value for '--concurrency': " in from_option.stderr
    assert "TOKENREFRESH_CONCURRENCY" not in from_option.stderr
    from_env = cli("refresh", "--dry-run", env={"TOKENREFRESH_CONCURRENCY": "0"})
    assert from_env.exit_code == 2
    assert (
        "Error: Invalid value for TOKENREFRESH_CONCURRENCY (the environment variable for "
        "'--concurrency'): " in from_env.stderr
    )
