"""What `tokenrefresh accounts token` imports for a fresh token, and the plain coercion of
option values that lets it skip pydantic (cli/coercion.py) giving Typer's own results.

Start-up time itself is measured by benchmarks/bench/startup.py, not here: these tests
look at what is imported, never at the wall clock.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.core import _TyperParameter

from conftest import run_python
from helpers import AddAccounts
from standin import TikTokStandIn
from tokenrefresh.cli import app
from tokenrefresh.cli.coercion import PlainParam

# Run the CLI, then list the heavy packages it loaded on stderr. `main` is the console
# script (the quick path answers a fresh token on SQLite); `run` the Typer command alone.
RUN_AND_LIST = """\
import atexit, sys
HEAVY = {heavy!r}
def listed():
    loaded = sorted(m for m in sys.modules if m.startswith(HEAVY))
    sys.stderr.write("loaded: " + (",".join(loaded) or "none") + "\\n")
atexit.register(listed)
sys.argv = ["tokenrefresh", *sys.argv[1:]]
from tokenrefresh import cli
{entry}
"""
HEAVY = ("pydantic", "rich", "requests", "urllib3", "alembic", "tokenrefresh.render")
HEAVY += ("tokenrefresh.services.connections", "tokenrefresh.adapters.tiktok")
TYPER_AND_SQLALCHEMY = (
    "typer",
    "click",
    "sqlalchemy",
    "psycopg",
    "tokenrefresh.storage.repository",
)
QUICK = RUN_AND_LIST.format(heavy=HEAVY + TYPER_AND_SQLALCHEMY, entry="cli.main()")
TYPER = RUN_AND_LIST.format(
    heavy=HEAVY, entry="cli.app; from tokenrefresh.cli.root import run; run()"
)


def fresh_token_loads(env: dict[str, str], script: str, expected: str) -> str:
    result = run_python(script, "accounts", "token", "--open-id", "user0", config=env)
    assert (result.returncode, result.stdout) == (0, expected), result.stderr
    return result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_fresh_token_imports_no_typer_sqlalchemy_pydantic_rich_or_requests(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    issued = add_accounts(1, expires_in=86400)
    standin.reset_log()
    assert fresh_token_loads(env, QUICK, issued[0].access_token + "\n") == "loaded: none\n"
    assert standin.received == []


def test_the_typer_command_for_a_fresh_token_imports_no_pydantic_rich_or_requests(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    """Where the quick path does not answer (PostgreSQL, say), the command still skips
    pydantic (cli/coercion.py), rich, requests and Alembic."""
    issued = add_accounts(1, expires_in=86400)
    standin.reset_log()
    assert fresh_token_loads(env, TYPER, issued[0].access_token + "\n") == "loaded: none\n"
    assert standin.received == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "args",
    [("refresh", "--window", "3h", "-v", "--json", "--log-format", "json"), ("status",)],
    ids=" ".join,
)
def test_commands_with_counts_and_choices_import_no_pydantic(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    """`-v`'s count and `--log-format`'s choice skip pydantic too."""
    script = RUN_AND_LIST.format(heavy=("pydantic",), entry="cli.main()")
    result = run_python(script, *args, config=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("loaded: none\n"), result.stderr


# Kinds of parameter the app does not have today: a parser raising ValueError (pydantic
# words that error), numbers, paths, lists with a parser.
probe = typer.Typer()


@probe.command()
def _probe(
    number: Annotated[int, typer.Option(parser=int)] = 1,
    count: int = 2,
    ratio: Annotated[float, typer.Option(min=0)] = 0.5,
    where: Path | None = None,
    many: Annotated[list[int], typer.Option(parser=int)] = [],  # noqa: B006
) -> None:
    """Not run: its parameters are compared."""


@functools.cache
def _command() -> Any:
    return typer.main.get_command(app)


def _parameters() -> list[tuple[str, _TyperParameter]]:
    """Every parameter of every command of the app, by `command --option` name."""
    found: list[tuple[str, _TyperParameter]] = []

    def walk(command: Any, path: str) -> None:
        for param in command.params:
            if isinstance(param, _TyperParameter):
                found.append((f"{path} {param.name}".strip(), param))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(_command(), "")
    walk(typer.main.get_command(probe), "probe")
    return found


# Values as the parser hands them over: absent, strings (good and bad), lists, defaults.
SAMPLES: list[Any] = [None, "1", "abc", "", " 7 ", "1h", "20", "-1", "x" * 300, [], ["a"],
                      ("a", "b"), "user.info.basic,video.list", True, 0, 2.5, False, 1,
                      3, "human", "json", "JSON", "table", "text"]  # fmt: skip


def _outcome(runtime: Any, value: Any, param: _TyperParameter) -> tuple[str, Any]:
    ctx = typer.Context(_command())
    try:
        return "value", runtime.coerce(value, param=param, ctx=ctx)
    except Exception as error:  # the message a user would see
        return type(error).__name__, str(error)


PARAMETERS = _parameters()


@pytest.mark.parametrize(("name", "param"), PARAMETERS, ids=[name for name, _ in PARAMETERS])
def test_plain_coercion_gives_what_typers_own_gives(name: str, param: _TyperParameter) -> None:
    from typer._coercion import build_runtime_param

    plain = PlainParam(param.type_descriptor)
    typers = build_runtime_param(param.type_descriptor)
    for value in [*SAMPLES, param.default]:
        got, expected = _outcome(plain, value, param), _outcome(typers, value, param)
        assert got == expected, (name, value)
        assert type(got[1]) is type(expected[1]), (name, value)
