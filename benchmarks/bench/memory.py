"""3. Memory: peak RSS of a `refresh` process over many due accounts vs over few."""

from __future__ import annotations

from bench.common import fmt_mib, log, md_table, median
from bench.harness import Benchmark, Harness, RefreshRun, Row


def run(harness: Harness) -> None:
    assert harness.db is not None
    assert harness.standin is not None
    s = harness.s
    harness.standin.latency = 0.0
    results: dict[int, list[RefreshRun]] = {}
    imports: dict[int, float] = {}
    for count, repeats in (
        (s.memory_baseline, max(s.repeat, 1)),
        (s.memory_accounts, s.memory_repeat),
    ):
        results[count] = []
        for _ in range(repeats):
            log(f"memory: importing and refreshing {count:,} accounts...")
            run, imports[count] = harness.measure_refresh(
                count, 32, 0.0, "--max-runtime", "0", timeout=7200, sample_rss=True
            )
            results[count].append(run)
            log(
                f"memory: {count:,} accounts: peak RSS {fmt_mib(run.proc.maxrss_kib)}, "
                f"{run.rate:.0f}/s"
            )
    small, large = s.memory_baseline, s.memory_accounts
    peak_small = median([r.proc.maxrss_kib for r in results[small]])
    peak_large = median([r.proc.maxrss_kib for r in results[large]])
    ratio = peak_large / peak_small
    rows = []
    for count in (small, large):
        for run in results[count]:
            samples = run.proc.rss_samples
            curve = (
                ", ".join(
                    f"{fmt_mib(samples[int(len(samples) * q)][1])}"
                    for q in (0.1, 0.25, 0.5, 0.75, 0.99)
                )
                if len(samples) >= 5
                else "(too short to sample)"
            )
            rows.append(
                [
                    f"{count:,}",
                    fmt_mib(run.proc.maxrss_kib),
                    curve,
                    f"{run.duration:.1f} s",
                    f"{run.rate:.0f}/s",
                    f"{run.cpu_ms_per_refresh:.2f}",
                    f"{run.machine_busy:.0%}",
                    f"{imports[count]:.0f} s",
                ]
            )
    harness.sections.append(
        "\n".join(
            [
                "## 3. Memory: peak RSS of `refresh`",
                "",
                "Stand-in latency 0, `--concurrency 32 --max-runtime 0`, every account due. "
                "Peak RSS is `ru_maxrss` of exactly that child, from `os.wait4` on its pid; "
                "the curve is VmRSS sampled from /proc every 0.25 s (at 10/25/50/75/99 % of "
                "the run).",
                "",
                md_table(
                    [
                        "due accounts",
                        "peak RSS (wait4)",
                        "RSS during the run",
                        "duration",
                        "rate",
                        "refresh CPU ms/account",
                        "machine CPU busy",
                        "import took",
                    ],
                    rows,
                ),
                "",
                f"Ratio {large:,} vs {small:,}: {ratio:.2f}x.",
            ]
        )
    )
    harness.summary.append(
        Row(
            "3 memory",
            f"peak RSS {large:,} vs {small:,} due accounts",
            f"{fmt_mib(peak_large)} vs {fmt_mib(peak_small)} = {ratio:.2f}x",
            "<= 1.5x",
            ratio <= 1.5,
        )
    )
    harness.summary.append(
        Row(
            "3 memory",
            f"CPU-bound rate at latency 0 ({large:,} accounts, concurrency 32)",
            f"{median([r.rate for r in results[large]]):.0f}/s",
        )
    )


BENCHMARK = Benchmark("memory", run)
