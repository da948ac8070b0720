"""2. Selection at scale: `refresh --dry-run` and `status` over a large table; query plans.

The table is written in one `INSERT ... SELECT FROM generate_series` (the mix below); the
in-process timings and plans are in `bench.queries`.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

from cryptography.fernet import Fernet

from bench.common import BenchmarkError, code_block, fmt_mib, fmt_s, log, md_table, median
from bench.database import BenchDatabase
from bench.harness import Benchmark, Harness, Row
from bench.processes import run_process
from bench.profiling import cprofile_table, importtime_total
from bench.queries import in_process_queries


def run(harness: Harness) -> None:
    assert harness.db is not None
    s = harness.s
    harness.db.reset()
    now = datetime.now(UTC)
    log(f"selection: inserting {s.scale_accounts:,} accounts with generate_series...")
    started = time.perf_counter()
    insert_accounts(harness.db, s.scale_accounts, s.due_percent, now, harness.key)
    insert_run_history(harness.db, now)
    inserted = time.perf_counter() - started
    log(f"selection: inserted in {inserted:.0f}s; VACUUM ANALYZE...")
    started = time.perf_counter()
    harness.db.execute("VACUUM ANALYZE accounts")
    harness.db.execute("VACUUM ANALYZE runs")
    vacuumed = time.perf_counter() - started
    mix = mix_counts(harness.db)
    expected_due = harness.db.due_count()
    log(f"selection: {expected_due:,} due; timing the commands...")

    # Subprocesses, alternating, plus `--version` as the floor of any command.
    dry, status, version, hello = [], [], [], []
    for _ in range(s.selection_runs):
        proc = harness.cli("refresh", "--dry-run", "--json", timeout=300).check()
        count = proc.json()["count"]
        if count != expected_due:
            raise BenchmarkError(f"dry run planned {count}, expected {expected_due}")
        dry.append(proc)
        status.append(harness.cli("status", "--json", timeout=300).check())
        version.append(harness.cli("--version").check())
        hello.append(run_process([sys.executable, str(harness.hello_path()), "--name", "x"],
                                 harness.env).check())  # fmt: skip
    imports = {
        name: importtime_total(
            run_process(
                [sys.executable, "-X", "importtime", *args],
                harness.config_env(),
                timeout=300,
            )
            .check()
            .stderr
        )
        for name, args in (
            ("dry", ["-m", "tokenrefresh", "refresh", "--dry-run", "--json"]),
            ("status", ["-m", "tokenrefresh", "status", "--json"]),
            ("version", ["-m", "tokenrefresh", "--version"]),
            ("hello", [str(harness.hello_path()), "--name", "x"]),
        )
    }
    profiles = [
        cprofile_table(harness, ["refresh", "--dry-run", "--json"]),
        cprofile_table(harness, ["status", "--json"]),
    ]
    dry_wall = median([p.wall for p in dry])
    status_wall = median([p.wall for p in status])
    version_wall = median([p.wall for p in version])

    timings, plans = in_process_queries(harness.db, s.selection_runs)
    text = [
        f"## 2. Selection at scale: {s.scale_accounts:,} accounts, {expected_due:,} due",
        "",
        f"Rows made with one `INSERT ... SELECT FROM generate_series` after "
        f"`tokenrefresh db upgrade` ({inserted:.0f} s), then `VACUUM ANALYZE` "
        f"({vacuumed:.0f} s). One valid Fernet ciphertext is reused for every token. "
        "The mix:",
        "",
        md_table(["kind", "status", "accounts"], [[k, st, f"{n:,}"] for k, st, n in mix]),
        "",
        "Not-due active tokens expire 2 h to 24 h from the insert, so none becomes due for "
        "30 minutes. Also 1,470 past runs in `runs` (30 days of cron) for `status`.",
        "",
        f"### Commands (child processes, median of {s.selection_runs}, alternating)",
        "",
        md_table(
            ["command", "median wall", "min", "max", "CPU (median)", "imports", "peak RSS"],
            [
                [
                    label,
                    fmt_s(median([p.wall for p in ps])),
                    fmt_s(min(p.wall for p in ps)),
                    fmt_s(max(p.wall for p in ps)),
                    fmt_s(median([p.cpu for p in ps])),
                    fmt_s(imports[name]),
                    fmt_mib(median([p.maxrss_kib for p in ps])),
                ]
                for label, name, ps in (
                    ("`refresh --dry-run --json`", "dry", dry),
                    ("`status --json`", "status", status),
                    ("`tokenrefresh --version`", "version", version),
                    ("hello-world running its command", "hello", hello),
                )
            ],
        ),
        "",
        "`--version` is the floor of every command: interpreter start and `cli` imports, "
        "no database. The hello-world (section 4's one-command Typer app, running its "
        "command) is the floor of any Typer command on this machine: the installed Typer "
        "imports pydantic to coerce parameters whenever a command runs. *imports*: the "
        "sum of the top-level imports' cumulative times in one extra run with "
        "`-X importtime` (which itself adds some overhead): how much of the wall time is "
        "spent importing modules rather than querying.",
        "",
        "### Where a command's time goes (cProfile, one run each)",
        "",
        "Cumulative time of the main thread's calls (cProfile slows Python code down, "
        "so read the shares, not the absolute numbers; `<imports>` is the time spent "
        "importing modules anywhere in the run).",
        "",
        *profiles,
        f"### In-process query times (Repository on this database, median of "
        f"{s.selection_runs}, warm)",
        "",
        md_table(
            ["call", "median", "min"],
            [[k, fmt_s(median(v)), fmt_s(min(v))] for k, v in timings.items()],
        ),
        "",
        "### Plans: `EXPLAIN (ANALYZE, BUFFERS)` of the SQL the repository sent",
        "",
        "Captured with a `before_cursor_execute` hook while the calls above ran, then "
        "explained with the same parameters (custom plans). psycopg prepares a statement "
        "after 5 executions on a connection, and PostgreSQL may then switch to a generic "
        "plan: the due-candidates and claim queries are also shown with "
        "`plan_cache_mode = force_generic_plan` (PREPARE/EXECUTE).",
        "",
        md_table(
            ["query", "plan", "indexes used", "seq scans", "execution"],
            [
                [
                    p.label,
                    p.kind,
                    ", ".join(p.indexes) or "none",
                    ", ".join(p.seq_scans) or "none",
                    p.execution,
                ]
                for p in plans
            ],
        ),
    ]
    for plan in plans:
        text += [
            "",
            f"**{plan.label}** ({plan.kind})",
            "",
            code_block(plan.sql, "sql"),
            "",
            code_block(plan.text),
        ]
    harness.sections.append("\n".join(text))

    uses_due = all(
        "ix_accounts_due" in p.indexes and not p.seq_scans
        for p in plans
        if p.label.startswith("due candidates")
    )
    harness.summary += [
        Row(
            "2 selection",
            f"`refresh --dry-run --json` ({expected_due:,} planned), wall",
            fmt_s(dry_wall),
            "< 1 s",
            dry_wall < 1.0,
        ),
        Row(
            "2 selection",
            "`status --json`, wall",
            fmt_s(status_wall),
            "< 1 s",
            status_wall < 1.0,
        ),
        Row("2 selection", "floor: `tokenrefresh --version`, wall", fmt_s(version_wall)),
        Row(
            "2 selection",
            "in-process `Repository.stats`",
            fmt_s(median(timings["Repository.stats(now, 90m)"])),
        ),
        Row(
            "2 selection",
            "in-process first `due_batches` batch of 500",
            fmt_s(median(timings["first batch of due_batches(due, 500)"])),
        ),
        Row(
            "2 selection",
            "in-process `Repository.claim` (lock + release)",
            fmt_s(median(timings["claim(first due account) + release"])),
        ),
        Row(
            "2 selection",
            "due-candidates query uses ix_accounts_due (custom and generic)",
            "yes" if uses_due else "no",
            "index",
            uses_due,
        ),
    ]


BENCHMARK = Benchmark("selection", run)


ACCOUNTS_SQL = """
WITH series AS (
    SELECT g,
           CASE
               WHEN (g * 7) %% 10000 < %(due_per_10k)s THEN 'due'
               WHEN g %% 100 = 1 THEN 'expired'
               WHEN g %% 200 = 2 THEN 'disabled'
               WHEN g %% 200 = 102 THEN 'backoff'
               ELSE 'fresh'
           END AS kind,
           (g::bigint * 7919) %% 100000 AS spread
    FROM generate_series(1, %(n)s) AS g
)
INSERT INTO accounts (
    open_id, label, access_token_ciphertext, refresh_token_ciphertext, access_expires_at,
    refresh_expires_at, scope, status, token_generation, last_refreshed_at, last_error,
    consecutive_failures, next_attempt_at, created_at, updated_at
)
SELECT
    'bench-' || g,
    CASE WHEN g %% 3 = 0 THEN 'Creator ' || g END,
    CASE WHEN kind = 'expired' AND g %% 2 = 0 THEN NULL ELSE %(ct)s END,
    CASE WHEN kind = 'expired' AND g %% 2 = 0 THEN NULL ELSE %(ct)s END,
    CASE kind
        -- due: expiring in the window (a few already expired: overdue)
        WHEN 'due' THEN %(now)s - interval '10 minutes' + spread * interval '50 milliseconds'
        WHEN 'expired' THEN %(now)s - interval '30 days' + spread * interval '20 seconds'
        -- active, failing, in back-off: in the window but not due (next_attempt_at later)
        WHEN 'backoff' THEN %(now)s + spread * interval '50 milliseconds'
        -- the rest: refreshed recently, 2 h to 24 h left
        ELSE %(now)s + interval '2 hours' + spread * interval '792 milliseconds'
    END,
    CASE kind
        WHEN 'expired' THEN %(now)s - interval '1 day' - spread * interval '1 second'
        ELSE %(now)s + interval '30 days' + spread * interval '288 seconds'
    END,
    'user.info.basic,video.publish',
    CASE kind WHEN 'expired' THEN 'expired' WHEN 'disabled' THEN 'disabled' ELSE 'active' END,
    1 + spread %% 50,
    CASE
        WHEN kind = 'due' AND g %% 7 = 0 THEN NULL
        WHEN kind = 'fresh' THEN %(now)s - (spread %% 1800) * interval '1 second'
        ELSE %(now)s - interval '2 hours' - (spread %% 86400) * interval '1 second'
    END,
    CASE kind
        WHEN 'expired' THEN 'TikTok rejected the refresh token: invalid_grant'
        WHEN 'backoff' THEN 'refresh failed: TikTok answered HTTP 503'
    END,
    CASE kind WHEN 'backoff' THEN 3 ELSE 0 END,
    CASE kind
        WHEN 'backoff' THEN %(now)s + interval '6 hours'
        ELSE %(now)s - interval '1 hour'
    END,
    %(now)s - interval '400 days' + spread * interval '5 minutes',
    %(now)s - interval '1 hour'
FROM series
"""

RUNS_SQL = """
INSERT INTO runs (command, host, pid, shard, started_at, finished_at, outcome, exit_code,
                  counts, message)
SELECT 'refresh', 'bench-host', 1000 + g, NULL,
       %(now)s - g * interval '30 minutes',
       %(now)s - g * interval '30 minutes' + interval '2 minutes',
       CASE WHEN g %% 97 = 0 THEN 'failures' ELSE 'ok' END,
       CASE WHEN g %% 97 = 0 THEN 1 ELSE 0 END,
       '{"expired": 0, "failed": 0, "refreshed": 10000, "skipped": 0}', NULL
FROM generate_series(1, 1440) AS g
UNION ALL
SELECT 'cleanup', 'bench-host', 5000 + g, NULL,
       %(now)s - g * interval '1 day', %(now)s - g * interval '1 day' + interval '5 seconds',
       'ok', 0, '{}', NULL
FROM generate_series(1, 30) AS g
"""


def insert_accounts(
    db: BenchDatabase, count: int, due_percent: float, now: datetime, key: str
) -> None:
    ciphertext = Fernet(key.encode("ascii")).encrypt(b"rft." + os.urandom(32).hex().encode())
    # (g * 7) mod 10000 walks every residue, so exactly due_percent of any 10,000 are due;
    # the due ones are spread over the whole id range, not clustered at its start.
    with db.connect() as connection:
        connection.execute(
            ACCOUNTS_SQL,
            {
                "n": count,
                "due_per_10k": round(due_percent * 100),
                "ct": ciphertext.decode("ascii"),
                "now": now,
            },
        )


def insert_run_history(db: BenchDatabase, now: datetime) -> None:
    with db.connect() as connection:
        connection.execute(RUNS_SQL, {"now": now})


def mix_counts(db: BenchDatabase) -> list[tuple[str, str, int]]:
    with db.connect() as connection:
        rows = connection.execute(
            """
            SELECT CASE
                       WHEN status <> 'active' THEN status
                       WHEN consecutive_failures > 0 THEN 'active, failing, in back-off'
                       WHEN access_expires_at <= now() + interval '90 minutes'
                           THEN 'active, due'
                       ELSE 'active, not due'
                   END AS kind,
                   status, count(*)
            FROM accounts GROUP BY 1, 2 ORDER BY 3 DESC
            """
        ).fetchall()
    return [(str(kind), str(status), int(n)) for kind, status, n in rows]
