#!/usr/bin/env python3
"""Where a `refresh` run spends its CPU: py-spy over one run against the stand-in.

    python benchmarks/profile_refresh.py --py-spy /path/to/py-spy [--accounts 2000]
        [--concurrency 32] [--latency 0.1] [--gil]

The evidence behind the throughput findings in benchmarks/README.md. Same setup as
`run.py` (own database, dropped at the end; fresh key; stand-in in this process); py-spy
is not a dependency of tokenrefresh: install it anywhere (`pip install py-spy` in any
virtualenv) and pass its path. Prints the profile grouped by library and the hottest
functions (self and inclusive samples); --output keeps the raw collapsed stacks.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import default_admin_url, log, md_table
from bench.harness import Harness, Settings
from bench.processes import run_process

GROUPS = (
    ("sqlalchemy", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("cryptography", "cryptography (Fernet)"),
    ("requests", "requests"),
    ("urllib3", "urllib3"),
    ("http/client", "http.client"),
    ("email/", "http.client (header parsing)"),
    ("json/", "json"),
    ("logging", "logging"),
    ("tokenrefresh", "tokenrefresh"),
    ("concurrent/futures", "thread pool"),
    ("threading", "threading"),
)


def group_of(frame: str) -> str:
    for needle, name in GROUPS:
        if needle in frame:
            return name
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/profile_refresh.py")
    parser.add_argument("--py-spy", required=True, help="path of the py-spy executable")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--output", type=Path, help="keep the collapsed stacks here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--admin-url", default=default_admin_url())
    args = parser.parse_args()
    py_spy = shutil.which(args.py_spy) or args.py_spy

    settings = Settings(
        accounts=args.accounts,
        concurrency=[args.concurrency],
        latency=args.latency,
        repeat=1,
        admin_url=args.admin_url,
    )
    with tempfile.TemporaryDirectory(prefix="tokenrefresh-profile-") as tmp:
        harness = Harness(settings, Path(tmp))
        try:
            harness.start_database()
            assert harness.standin is not None
            harness.import_due_accounts(args.accounts)
            harness.standin.latency = args.latency
            stacks = Path(tmp) / "stacks.txt"
            command = [
                py_spy, "record", "--format", "raw", "--rate", str(args.rate),
                "--output", str(stacks), "--nonblocking",
                *(["--gil"] if args.gil else []),
                "--", sys.executable, "-m", "tokenrefresh", "refresh", "--json",
                "--concurrency", str(args.concurrency),
            ]  # fmt: skip
            log(f"profiling: {' '.join(command[:8])} ...")
            proc = run_process(command, harness.config_env(), timeout=3600)
            if proc.exit_code not in (0,):
                log(f"py-spy/refresh exited {proc.exit_code}: {proc.stderr[-2000:]}")
            report = proc.stdout[proc.stdout.find("{") :]
            log(f"refresh report: {report[:400]}")
            text = stacks.read_text(encoding="utf-8")
            if args.output:
                args.output.write_text(text, encoding="utf-8")
        finally:
            harness.close()
    print(summarize(text, args))
    return 0


def summarize(text: str, args: argparse.Namespace) -> str:
    total = 0
    self_by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_group: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_by_function[leaf] += count
        # The group of the innermost frame that is not the standard library's plumbing.
        by_group[next((g for f in reversed(frames) if (g := group_of(f)) != "other"), "other")] += (
            count
        )
        for frame in set(frames):
            inclusive[frame] += count

    def share(n: int) -> str:
        return f"{n / total:.1%}"

    mode = "samples holding the GIL" if args.gil else "samples of active (non-idle) threads"
    return "\n".join(
        [
            f"## py-spy: `refresh --concurrency {args.concurrency}`, {args.accounts} accounts, "
            f"latency {args.latency * 1000:.0f} ms ({total} {mode})",
            "",
            "By library (innermost recognised frame):",
            "",
            md_table(["library", "samples", "share"],
                     [[name, n, share(n)] for name, n in by_group.most_common()]),
            "",
            "Hottest functions, self:",
            "",
            md_table(["function", "share"],
                     [[f"`{f}`", share(n)] for f, n in self_by_function.most_common(args.top)]),
            "",
            "Hottest tokenrefresh functions, inclusive:",
            "",
            md_table(
                ["function", "share"],
                [[f"`{f}`", share(n)] for f, n in inclusive.most_common()
                 if "tokenrefresh" in f][: args.top],
            ),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
