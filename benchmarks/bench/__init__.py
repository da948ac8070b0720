"""The benchmarks of tokenrefresh: a small shared harness and one module a benchmark.

    common      constants, formatting, statistics (medians), errors
    processes   child processes measured through a launcher (wall, CPU, peak RSS)
    database    a PostgreSQL database of the benchmarks' own, dropped at the end
    machine     what the report says of the machine and the source measured
    harness     the Harness: the stand-in, the CLI's environment, refresh runs
    report      the markdown report
    profiling   cProfile and `-X importtime` tables
    cli         `python benchmarks/run.py`: options, the run, the report written

    throughput, selection (with queries), memory, startup: one module a benchmark

Importing this package makes the stand-in (tests/standin.py) importable, and the source
tree too where tokenrefresh is not installed in the running interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the stand-in lives with the tests
try:
    import tokenrefresh  # noqa: F401 - installed (editable) in the interpreter running us?
except ImportError:  # pragma: no cover - a plain checkout: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
