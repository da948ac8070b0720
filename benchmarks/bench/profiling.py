"""Where a command's time goes: cProfile tables and `-X importtime` sums and offenders."""

from __future__ import annotations

import re
import shlex
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import md_table, median
from bench.harness import Harness
from bench.processes import run_process

_PROFILED = ("/tokenrefresh/", "typer/_coercion", "json/__init__", "sqlalchemy/engine/base")


def cprofile_table(harness: Harness, args: list[str], top: int = 16) -> str:
    """Run one command under cProfile; its heaviest calls as a markdown table."""
    import pstats

    path = harness.workdir / f"profile-{uuid.uuid4().hex[:8]}.prof"
    proc = run_process(
        [sys.executable, "-m", "cProfile", "-o", str(path), "-m", "tokenrefresh", *args],
        harness.config_env(),
        timeout=300,
    )
    if proc.exit_code != 0 or not path.exists():
        return f"(cProfile of `{shlex.join(args)}` failed: exit {proc.exit_code})\n"
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = max(ct for _cc, _nc, _tt, ct, _callers in stats.values())
    imports = max(
        (ct for (file, _, name), (_cc, _nc, _tt, ct, _c) in stats.items()
         if name == "_find_and_load" and "importlib" in file),
        default=0.0,
    )  # fmt: skip
    # _find_and_load is recursive: its cumulative time (cProfile counts a recursive call
    # once) is the whole time spent importing.
    rows = [["`<imports>`", f"{imports:.3f}", f"{imports / total:.0%}"]]
    entries = sorted(
        (
            (ct, f"{Path(file).parent.name}/{Path(file).name}:{line} {name}")
            for (file, line, name), (_cc, _nc, _tt, ct, _callers) in stats.items()
            if any(part in file for part in _PROFILED) and name != "<module>"
        ),
        reverse=True,
    )
    rows += [[f"`{where}`", f"{ct:.3f}", f"{ct / total:.0%}"] for ct, where in entries[:top]]
    return "\n".join(
        [
            f"`{shlex.join(args)}`: {total:.2f} s in all under cProfile",
            "",
            md_table(["call", "cumulative s", "share"], rows),
            "",
        ]
    )


_IMPORTTIME_RE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def importtime_total(stderr: str) -> float:
    """Seconds spent importing: the sum of the depth-0 cumulative times of -X importtime."""
    total = 0
    for line in stderr.splitlines():
        match = _IMPORTTIME_RE.match(line)
        if match and not match.group(3):
            total += int(match.group(2))
    return total / 1e6


def importtime_table(
    argv: list[str], env: Mapping[str, str], runs: int
) -> dict[str, tuple[float, float, int]]:
    """module -> (median self µs, median cumulative µs, depth) over `runs` runs of argv."""
    per_module: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(runs):
        proc = run_process([sys.executable, "-X", "importtime", *argv], env).check()
        for line in proc.stderr.splitlines():
            match = _IMPORTTIME_RE.match(line)
            if match:
                self_us, cumulative_us, indent, name = match.groups()
                depth = len(indent) // 2
                per_module.setdefault(name, []).append((int(self_us), int(cumulative_us), depth))
    return {
        name: (median([v[0] for v in values]), median([v[1] for v in values]), values[0][2])
        for name, values in per_module.items()
    }


def import_offenders(env: Mapping[str, str], hello: Path, runs: int) -> str:
    """`python -X importtime -m tokenrefresh --help`, and what it imports beyond hello-world."""
    table = importtime_table(["-m", "tokenrefresh", "--help"], env, runs)
    baseline = importtime_table([str(hello), "--help"], env, runs)
    total = sum(self_us for self_us, _, _ in table.values())
    base_total = sum(self_us for self_us, _, _ in baseline.values())
    extra = {name: v for name, v in table.items() if name not in baseline}
    extra_total = sum(self_us for self_us, _, _ in extra.values())

    def by_package(modules: Mapping[str, tuple[float, float, int]]) -> list[tuple[str, float]]:
        sums: dict[str, float] = {}
        for name, (self_us, _, _) in modules.items():
            sums[name.split(".")[0]] = sums.get(name.split(".")[0], 0) + self_us
        return sorted(sums.items(), key=lambda item: -item[1])[:12]

    top_cumulative = sorted(
        ((name, v) for name, v in table.items() if v[2] <= 1), key=lambda item: -item[1][1]
    )[:12]
    top_extra = sorted(extra.items(), key=lambda item: -item[1][0])[:15]
    return "\n".join(
        [
            f"### `python -X importtime -m tokenrefresh --help` (median of {runs} runs)",
            "",
            f"Sum of all imports' self time: {total / 1000:.0f} ms over {len(table)} modules "
            f"(the hello-world's `--help`: {base_total / 1000:.0f} ms over {len(baseline)} "
            f"modules). Modules that only tokenrefresh imports: {len(extra)}, "
            f"{extra_total / 1000:.0f} ms of self time.",
            "",
            "By top-level package (sum of self times):",
            "",
            md_table(
                ["package", "self ms", "share"],
                [[f"`{name}`", f"{us / 1000:.1f}", f"{us / total:.0%}"]
                 for name, us in by_package(table)],
            ),
            "",
            "Largest imports at depth 0-1 (cumulative: the module and all it imports):",
            "",
            md_table(
                ["module", "cumulative ms"],
                [[f"`{name}`", f"{v[1] / 1000:.1f}"] for name, v in top_cumulative],
            ),
            "",
            "The offenders: modules `tokenrefresh --help` imports and the hello-world does "
            "not, by self time:",
            "",
            md_table(
                ["module", "self ms", "imported at depth"],
                [[f"`{name}`", f"{v[0] / 1000:.1f}", v[2]] for name, v in top_extra],
            ),
        ]
    )  # fmt: skip
