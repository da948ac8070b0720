"""The markdown report: the run's circumstances, the summary table, each benchmark's section."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime

from bench.common import md_table, verdict
from bench.harness import Harness
from bench.machine import memory_gib, source_state


def render(harness: Harness, command: str, started: datetime, elapsed: float) -> str:
    """The whole report, as printed and written to --output."""
    info = [
        f"- command: `{command}`",
        f"- date: {started.isoformat(timespec='seconds')}, total time {elapsed / 60:.1f} min",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{memory_gib():.0f} GiB RAM, {platform.platform()}",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- source: {harness.source_at_start}"
        + (
            ""
            if source_state() == harness.source_at_start
            else f" at the start; **changed during the run**, now {source_state()}"
        ),
    ]
    if harness.pg_info:
        pg = dict(harness.pg_info)
        assert harness.db is not None
        where = harness.db.admin_url.render_as_string(hide_password=True).rsplit("/", 1)[0]
        info.append(
            f"- PostgreSQL {pg.pop('version')} on {where} ("
            + ", ".join(f"{k}={v}" for k, v in pg.items())
            + ")"
        )
    info.append(
        f"- load average (1 min) at start {harness.load_at_start:.2f}, "
        f"at end {os.getloadavg()[0]:.2f}"
    )
    for note in harness.notes:
        info.append(f"- note: {note}")
    if harness.s.quick:
        info.append("- **--quick: smoke sizes, not the targets' sizes**")
    summary = md_table(
        ["benchmark", "measure", "result", "target", "met"],
        [
            [r.benchmark, r.measure, r.value, r.target or "-", verdict(r.met)]
            for r in harness.summary
        ],
    )
    return (
        "\n\n".join(
            [
                "# tokenrefresh benchmark results",
                "\n".join(info),
                "## Summary",
                summary,
                *harness.sections,
            ]
        )
        + "\n"
    )
