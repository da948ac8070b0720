#!/usr/bin/env python3
"""Benchmarks of tokenrefresh: one command, real processes, a real PostgreSQL database.

    python benchmarks/run.py              # the full default run (about 15 minutes)
    python benchmarks/run.py --quick      # a smoke version (about a minute)
    python benchmarks/run.py --only throughput,startup --repeat 5

It creates its own PostgreSQL database (dropped at the end, even on error or Ctrl-C), a
fresh Fernet key, and the loopback TikTok stand-in of tests/standin.py (in this process);
every measured command is `sys.executable -m tokenrefresh ...` as a child process. The
results are printed as markdown (and written to benchmarks/results/latest.md).

Benchmarks (targets from the issue), one module each in benchmarks/bench/:
  throughput  refreshes/s at --concurrency 1 and 32 against the stand-in with a fixed latency
  selection   `refresh --dry-run` and `status` over 1,000,000 accounts, 1% due; query plans
  memory      peak RSS (wait4 ru_maxrss) of `refresh` over 100,000 due accounts vs 1,000
  startup     `tokenrefresh --help` vs a bare Typer hello-world; -X importtime offenders

See benchmarks/README.md for what each one measures and why.
"""

from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
