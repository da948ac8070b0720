"""What the report says of the machine and of the source measured (read-only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench import ROOT


def source_state() -> str:
    """The commit measured, and which files under src/ differ from it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    files = [line[3:] for line in changed if line.strip()]
    return f"commit {commit}" + (
        f" plus uncommitted changes to {', '.join(files)}" if files else " (src/ clean)"
    )  # fmt: skip


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        with Path("/proc/stat").open(encoding="ascii") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except OSError:
        return (0.0, 0.0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle, total)


def postgres_cpu() -> float:
    """CPU seconds used so far by local `postgres` processes (and their reaped children).

    Backends that exit are reaped by the postmaster, whose cutime/cstime then hold their
    time, so the difference over a run counts the run's backends too. 0 when the server is
    not on this machine (or /proc is not readable).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name != "postgres" and not name.startswith("postgres:"):
            continue
        fields = text[text.rfind(")") + 2 :].split()
        total += sum(float(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")
