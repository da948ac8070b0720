"""4. Start-up: `tokenrefresh --help` vs a bare Typer hello-world; -X importtime offenders.
And `tokenrefresh accounts token 1` (a fresh token, SQLite) vs the hello-world's command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import fmt_s, md_table, median
from bench.harness import Benchmark, Harness, Row
from bench.processes import run_process
from bench.profiling import import_offenders, importtime_table

TOKEN_TARGET = 1.5


def alternate(
    commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, list[float]]:
    """Wall times of `runs` rounds of the commands, the order reversed every other round,
    after 3 warm-up runs of each (bytecode caches, page cache)."""
    for argv in commands.values():
        for _ in range(3):
            run_process(argv, env).check()
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(runs):
        names = list(commands) if index % 2 == 0 else list(reversed(commands))
        for name in names:
            walls[name].append(run_process(commands[name], env).check().wall)
    return walls


def walls_table(walls: dict[str, list[float]]) -> str:
    rows = [
        [f"`{name}`", fmt_s(median(w)), fmt_s(min(w)), fmt_s(max(w))] for name, w in walls.items()
    ]
    return md_table(["command", "median", "min", "max"], rows)


def run(harness: Harness) -> None:
    s = harness.s
    hello = harness.hello_path()
    env = harness.env  # no configuration: --help needs none
    commands = {
        "tokenrefresh --help": [sys.executable, "-m", "tokenrefresh", "--help"],
        "hello-world --help": [sys.executable, str(hello), "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    walls = alternate(commands, env, s.startup_runs)
    ours, hello_w = walls["tokenrefresh --help"], walls["hello-world --help"]
    ratio = median(ours) / median(hello_w)
    pairs = median([a / b for a, b in zip(ours, hello_w, strict=True)])
    offenders = import_offenders(env, hello, runs=5)
    text = [
        "## 4. Start-up: `--help`",
        "",
        f"{s.startup_runs} runs of each, alternating (after 3 warm-up runs each); the "
        "hello-world is a one-command Typer app written to a temp file, run by the same "
        "interpreter.",
        "",
        walls_table(walls),
        "",
        f"Ratio tokenrefresh / hello-world: {ratio:.2f} (median of per-pair ratios {pairs:.2f}).",
        "",
        offenders,
    ]
    harness.sections.append("\n".join(text))
    harness.summary.append(
        Row(
            "4 start-up",
            "`tokenrefresh --help` / hello-world `--help` (medians)",
            f"{fmt_s(median(ours))} / {fmt_s(median(hello_w))} = {ratio:.2f}",
            "<= 1.3",
            ratio <= 1.3,
        )
    )
    fresh_token(harness)


def token_environment(harness: Harness) -> dict[str, str]:
    """A SQLite database in the work directory with one account whose token is valid for a
    day, made with the CLI (no TikTok needed: a fresh token is read, never refreshed)."""
    env = {
        **harness.env,
        "TOKENREFRESH_DATABASE_URL": f"sqlite:///{harness.workdir / 'token.sqlite'}",
        "TOKENREFRESH_ENCRYPTION_KEYS": harness.key,
    }
    line = {
        "open_id": "bench-token",
        "access_token": "act.bench" + "x" * 60,
        "refresh_token": "rft.bench" + "y" * 60,
        "expires_in": 86400,
        "refresh_expires_in": 31536000,
        "scope": "user.info.basic",
    }
    path = harness.workdir / "token-import.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    cli = [sys.executable, "-m", "tokenrefresh"]
    run_process([*cli, "db", "upgrade", "--create", "--quiet"], env).check()
    run_process([*cli, "accounts", "import", "-", "--quiet"], env, stdin_path=path).check()
    path.unlink()
    return env


def fresh_token(harness: Harness) -> None:
    """`tokenrefresh accounts token 1` (the console script, as a shell script runs it) vs the
    hello-world running its command, pair by pair, the order swapped every other pair."""
    s = harness.s
    env = token_environment(harness)
    script = Path(sys.executable).with_name("tokenrefresh")
    token = [str(script)] if script.exists() else [sys.executable, "-m", "tokenrefresh"]
    label = "tokenrefresh" if script.exists() else "python -m tokenrefresh"
    commands = {
        "tokenrefresh accounts token 1": [*token, "accounts", "token", "1"],
        "hello-world": [sys.executable, str(harness.hello_path())],
    }
    walls = alternate(commands, env, s.startup_runs)
    ours, hello_w = walls["tokenrefresh accounts token 1"], walls["hello-world"]
    ratio = median(ours) / median(hello_w)
    pairs = median([a / b for a, b in zip(ours, hello_w, strict=True)])
    table = importtime_table(["-m", "tokenrefresh", "accounts", "token", "1"], env, runs=5)
    sums: dict[str, float] = {}
    for name, (self_us, _, _) in table.items():
        sums[name.split(".")[0]] = sums.get(name.split(".")[0], 0) + self_us
    total = sum(sums.values())
    packages = sorted(sums.items(), key=lambda item: -item[1])[:10]
    text = [
        "## 4b. Start-up: `accounts token` for a fresh token",
        "",
        f"{s.startup_runs} pairs, alternating (after 3 warm-up runs each): `{label} "
        "accounts token 1` on a SQLite file with one account whose token is valid for a "
        "day, and the hello-world running its command (`python hello.py`).",
        "",
        walls_table(walls),
        "",
        f"Ratio accounts token / hello-world: {ratio:.2f} (median of per-pair ratios {pairs:.2f}).",
        "",
        f"`python -X importtime -m tokenrefresh accounts token 1` (median of 5 runs): "
        f"{total / 1000:.0f} ms of self time over {len(table)} modules; by package:",
        "",
        md_table(
            ["package", "self ms", "share"],
            [[f"`{name}`", f"{us / 1000:.1f}", f"{us / total:.0%}"] for name, us in packages],
        ),
    ]
    harness.sections.append("\n".join(text))
    harness.summary.append(
        Row(
            "4 start-up",
            "`accounts token 1` (fresh) / hello-world (medians)",
            f"{fmt_s(median(ours))} / {fmt_s(median(hello_w))} = {ratio:.2f}",
            f"<= {TOKEN_TARGET}",
            ratio <= TOKEN_TARGET,
        )
    )


BENCHMARK = Benchmark("startup", run, needs_database=False)
