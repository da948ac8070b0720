"""`python benchmarks/run.py`: the options, the run, the report printed and written."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ROOT, memory, selection, startup, throughput
from bench.common import DEFAULT_ADMIN_URL, BenchmarkError, default_admin_url, log
from bench.harness import Harness, Settings
from bench.report import render

BENCHMARKS = (throughput.BENCHMARK, selection.BENCHMARK, memory.BENCHMARK, startup.BENCHMARK)
NAMES = tuple(bench.name for bench in BENCHMARKS)
RESULTS_FILE = ROOT / "benchmarks" / "results" / "latest.md"
FULL = Settings()
QUICK = Settings(
    accounts=300,
    serial_accounts=30,
    latency=0.05,
    repeat=1,
    scale_accounts=20_000,
    selection_runs=3,
    memory_accounts=3000,
    memory_baseline=300,
    startup_runs=5,
)


def parse_args(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmarks of tokenrefresh on a real PostgreSQL database, with real "
        "processes and the loopback TikTok stand-in. Prints a markdown report.",
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="smoke sizes (about a minute); explicit options still win",
    )
    add(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma separated): {', '.join(NAMES)}",
    )
    add("--accounts", type=int, help="throughput: due accounts per run (default 2000)")
    add(
        "--serial-accounts",
        type=int,
        help="throughput: accounts for the concurrency-1 runs (default 300; latency bound)",
    )
    add("--concurrency", help="throughput: comma-separated levels (default 1,32)")
    add("--latency", type=float, help="throughput: stand-in latency in seconds (default 0.1)")
    add("--repeat", type=int, help="throughput repetitions and memory baseline runs (default 3)")
    add("--scale-accounts", type=int, help="selection: accounts in the table (default 1000000)")
    add("--due-percent", type=float, default=1.0, help="selection: share due (default 1)")
    add("--selection-runs", type=int, help="selection: runs of each command (default 7)")
    add("--memory-accounts", type=int, help="memory: due accounts, large run (default 100000)")
    add("--memory-baseline", type=int, help="memory: due accounts, small run (default 1000)")
    add("--memory-repeat", type=int, help="memory: runs of the large size (default 1)")
    add("--startup-runs", type=int, help="start-up: runs of each command (default 25)")
    add(
        "--admin-url",
        default=default_admin_url(),
        help="PostgreSQL URL where a database may be created (default: "
        "$TOKENREFRESH_TEST_DATABASE_URL or " + DEFAULT_ADMIN_URL + ")",
    )
    add(
        "--output",
        type=Path,
        default=RESULTS_FILE,
        help="also write the report here (default benchmarks/results/latest.md); '-': don't",
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return getattr(defaults, name) if value is None else value

    only = [
        n.strip() for item in (args.only or [",".join(NAMES)]) for n in item.split(",") if n.strip()
    ]
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {NAMES}")
    given = args.concurrency
    levels = sorted({int(level) for level in given.split(",")} if given else defaults.concurrency)
    if any(level < 1 or level > 256 for level in levels):
        parser.error("--concurrency levels must be 1..256")
    output = None if str(args.output) == "-" else args.output
    return Settings(
        accounts=pick("accounts"),
        serial_accounts=pick("serial_accounts"),
        concurrency=levels,
        latency=pick("latency"),
        repeat=max(1, pick("repeat")),
        scale_accounts=pick("scale_accounts"),
        due_percent=args.due_percent,
        selection_runs=max(1, pick("selection_runs")),
        memory_accounts=pick("memory_accounts"),
        memory_baseline=pick("memory_baseline"),
        memory_repeat=max(1, pick("memory_repeat")),
        startup_runs=max(1, pick("startup_runs")),
        only=only,
        admin_url=args.admin_url,
        output=output,
        quick=args.quick,
    )


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit, so every `finally` (the DROP DATABASE) runs."""

    def handler(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with _terminate_cleanly(), tempfile.TemporaryDirectory(prefix="tokenrefresh-bench-") as tmp:
        harness = Harness(settings, Path(tmp))
        failed: BaseException | None = None
        try:
            harness.run(BENCHMARKS)
        except BenchmarkError as error:
            failed = error
            log(f"benchmark failed: {error}")
        finally:
            harness.close()
        report = render(harness, command, started_at, time.perf_counter() - started)
        if failed is not None:
            report += f"\n**The run stopped early:** {failed}\n"
    print(report)
    if settings.output is not None:
        settings.output.parent.mkdir(parents=True, exist_ok=True)
        settings.output.write_text(report, encoding="utf-8")
        log(f"report written to {settings.output}")
    return 1 if failed is not None else 0
