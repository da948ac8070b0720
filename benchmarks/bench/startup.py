"""4. Start-up: `tokenrefresh --help` vs a bare Typer hello-world; -X importtime offenders."""

from __future__ import annotations

import sys

from bench.common import fmt_s, md_table, median
from bench.harness import Benchmark, Harness, Row
from bench.processes import run_process
from bench.profiling import import_offenders


def run(harness: Harness) -> None:
    s = harness.s
    hello = harness.hello_path()
    env = harness.env  # no configuration: --help needs none
    commands = {
        "tokenrefresh --help": [sys.executable, "-m", "tokenrefresh", "--help"],
        "hello-world --help": [sys.executable, str(hello), "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    for argv in commands.values():  # warm-up: bytecode caches, page cache
        for _ in range(3):
            run_process(argv, env).check()
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(s.startup_runs):
        names = list(commands) if index % 2 == 0 else list(reversed(commands))
        for name in names:
            walls[name].append(run_process(commands[name], env).check().wall)
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
        md_table(
            ["command", "median", "min", "max"],
            [
                [f"`{name}`", fmt_s(median(w)), fmt_s(min(w)), fmt_s(max(w))]
                for name, w in walls.items()
            ],
        ),
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


BENCHMARK = Benchmark("startup", run, needs_database=False)
