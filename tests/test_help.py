"""`--help` reads as a user expects: flags without a value placeholder, every value
option with a word for its value, defaults as they are written (`1h30m`, not
`(1h30m)` or `1:30:00`), on the Typer and click versions we install. (Arguments keep
Typer's own `ID <int>`: the metavar already says what goes there.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tokenrefresh.cli import app


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from commands(sub, (*path, name))


ALL = sorted(commands())


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) or "tokenrefresh" for p in ALL])
def test_help_has_no_type_placeholders_and_plain_defaults(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.output
    options = text.split("Options:", 1)[-1]
    # No <bool>, <int range>, <list[int]>, <path> after an option (`1<=x<=256` is a range).
    assert re.search(r"<[a-z]", options) is None, options
    assert "[default: (" not in text, text
    assert "default: 0:" not in text, text  # a timedelta shown raw
    assert "╭" not in text  # plain help, the same on every version
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("--dry-run", "--json", "--yes", "--force", "--help")):
            assert stripped.split()[1:2] != ["BOOLEAN"], line


def test_durations_show_their_defaults_as_written() -> None:
    result = CliRunner().invoke(app, ["refresh", "--help"], env={"COLUMNS": "200"})
    flowed = " ".join(result.output.split())
    assert "--window DURATION" in flowed
    assert "default: 1h30m]" in flowed
    assert "default: 25m]" in flowed
    assert "--concurrency N" in flowed
    assert "--account-id ID" in flowed


def test_status_help_says_what_the_window_counts() -> None:
    result = CliRunner().invoke(app, ["status", "--help"], env={"COLUMNS": "200"})
    flowed = " ".join(result.output.split())
    assert "Count the access tokens that expire within this time." in flowed
    assert "Refresh access tokens" not in flowed
