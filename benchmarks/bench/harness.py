"""The shared harness: settings, the stand-in and database of a run, refresh runs measured."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from bench.common import MAX_RETRIES, BenchmarkError, Interrupted, default_admin_url, log
from bench.database import BenchDatabase
from bench.machine import machine_cpu, postgres_cpu, source_state
from bench.processes import Proc, clean_environment, run_process
from standin import TikTokStandIn

HELLO_WORLD = '''\
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    print(f"Hello {name}")


if __name__ == "__main__":
    app()
'''


@dataclass
class Settings:
    """Resolved options; the defaults are the full run's (see cli.QUICK for --quick's)."""

    accounts: int = 2000
    serial_accounts: int = 300
    concurrency: list[int] = field(default_factory=lambda: [1, 32])
    latency: float = 0.1
    repeat: int = 3
    scale_accounts: int = 1_000_000
    due_percent: float = 1.0
    selection_runs: int = 7
    memory_accounts: int = 100_000
    memory_baseline: int = 1000
    memory_repeat: int = 1
    startup_runs: int = 25
    only: list[str] = field(default_factory=list)
    admin_url: str = field(default_factory=default_admin_url)
    output: Path | None = None
    quick: bool = False


@dataclass
class Row:
    """One line of the summary table."""

    benchmark: str
    measure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name for --only, what runs it, whether it needs the database."""

    name: str
    run: Callable[[Harness], None]
    needs_database: bool = True


@dataclass
class RefreshRun:
    concurrency: int
    count: int
    duration: float  # duration_seconds from the JSON report
    proc: Proc
    machine_busy: float  # share of all CPUs busy during the run (/proc/stat)
    machine_busy_cpu: float  # busy CPU seconds of the whole machine during the run
    standin_cpu: float  # CPU seconds of this process (the stand-in) during the run
    postgres_cpu: float  # CPU seconds of the local PostgreSQL server during the run

    @property
    def cpu_ms_per_refresh(self) -> float:
        return self.proc.cpu * 1000 / self.count

    @property
    def other_cpu(self) -> float:
        """Busy CPU seconds of everything else on the machine (noise from other work)."""
        return max(
            0.0, self.machine_busy_cpu - self.proc.cpu - self.standin_cpu - self.postgres_cpu
        )

    @property
    def rate(self) -> float:
        return self.count / self.duration if self.duration > 0 else float("nan")

    @property
    def wall_rate(self) -> float:
        return self.count / self.proc.wall


class Harness:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.s = settings
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir()
        self.env = clean_environment(self.home)
        self.db: BenchDatabase | None = None
        self.standin: TikTokStandIn | None = None
        self.key = Fernet.generate_key().decode("ascii")
        self.summary: list[Row] = []
        self.sections: list[str] = []
        self.pg_info: dict[str, str] = {}
        self.notes: list[str] = []
        self.load_at_start = os.getloadavg()[0]
        self.source_at_start = source_state()
        self._serial = 0
        self.apps = 1  # > 1: that many TikTok apps in a configuration file, accounts spread

    # --- plumbing ---------------------------------------------------------------

    def config_env(self) -> dict[str, str]:
        assert self.db is not None
        assert self.standin is not None
        env = {
            **self.env,
            "TOKENREFRESH_DATABASE_URL": self.db.url,
            "TOKENREFRESH_ENCRYPTION_KEYS": self.key,
            "TIKTOK_CLIENT_KEY": self.standin.client_key,
            "TIKTOK_CLIENT_SECRET": self.standin.client_secret,
            "TIKTOK_API_BASE_URL": self.standin.base_url,
        }
        if self.apps > 1:
            env["TOKENREFRESH_CONFIG"] = str(self.apps_config())
        return env

    def app_names(self) -> list[str]:
        return [f"app-{index + 1}" for index in range(self.apps)]

    def apps_config(self) -> Path:
        """A configuration file of `apps` TikTok apps, all on the stand-in."""
        assert self.standin is not None
        path = self.workdir / f"apps-{self.apps}.toml"
        if not path.exists():
            path.write_text(
                "".join(
                    f'[apps.{name}]\nprovider = "tiktok"\n'
                    f'client_id = "{self.standin.client_key}"\n'
                    'client_secret_env = "TIKTOK_CLIENT_SECRET"\n'
                    f'base_url = "{self.standin.base_url}"\n\n'
                    for name in self.app_names()
                ),
                encoding="utf-8",
            )
        return path

    def hello_path(self) -> Path:
        """The bare Typer hello-world, written once into the work directory."""
        path = self.workdir / "hello.py"
        if not path.exists():
            path.write_text(HELLO_WORLD, encoding="utf-8")
        return path

    def cli(self, *args: str, **kwargs: Any) -> Proc:
        return run_process(
            [sys.executable, "-m", "tokenrefresh", *args], self.config_env(), **kwargs
        )

    def import_due_accounts(self, count: int, *, expires_in: int = 600) -> float:
        """Issue `count` fresh token pairs at the stand-in and import them (due: 10 min left).

        Returns the import's wall time. Open ids are new every time (the table was reset).
        """
        assert self.standin is not None
        self._serial += 1
        wall, created = 0.0, 0
        names = self.app_names() if self.apps > 1 else [None]
        for position, app in enumerate(names):  # the accounts spread evenly over the apps
            path = self.workdir / f"import-{self._serial}-{position}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for index in range(position, count, len(names)):
                    tokens = self.standin.issue(f"bench-{self._serial}-{index}")
                    out.write(json.dumps(tokens.as_import_line(expires_in=expires_in)) + "\n")
            which = ["--app", app] if app else []
            proc = self.cli(
                "accounts", "import", *which, "-", "--json", stdin_path=path, timeout=1800
            ).check()
            path.unlink()
            created += proc.json()["created"]
            wall += proc.wall
        if created != count:
            raise BenchmarkError(f"import created {created} accounts, expected {count}")
        return wall

    def measure_refresh(
        self,
        count: int,
        concurrency: int,
        latency: float,
        *extra: str,
        shards: int = 1,
        apps: int = 1,
        **kwargs: Any,
    ) -> tuple[RefreshRun, float]:
        """Reset, import `count` due accounts, refresh them; (run, import wall time).

        With `shards` > 1, that many `refresh --shard K/N` processes run at once, each with
        `concurrency` / `shards`; with `apps` > 1, the accounts spread over that many apps
        of a configuration file, each app's part with `concurrency` / `apps`. Repeated (at
        most MAX_RETRIES times, each noted in the report) when a run was interrupted from
        outside.
        """
        assert self.db is not None
        assert self.standin is not None
        self.apps = apps
        try:
            return self._measure_refresh(
                count, concurrency, latency, *extra, shards=shards, **kwargs
            )
        finally:
            self.apps = 1

    def _measure_refresh(
        self, count: int, concurrency: int, latency: float, *extra: str, shards: int, **kwargs: Any
    ) -> tuple[RefreshRun, float]:
        assert self.db is not None
        assert self.standin is not None
        for attempt in range(MAX_RETRIES + 1):
            self.db.reset()
            self.standin.latency = 0.0
            imported = self.import_due_accounts(count)
            self.standin.latency = latency
            try:
                run = self.refresh(concurrency, count, *extra, shards=shards, **kwargs)
                return run, imported
            except Interrupted as error:
                note = (
                    f"a run of {count:,} accounts at concurrency {concurrency} was interrupted "
                    f"from outside ({error}); measured again"
                )
                log(note)
                self.notes.append(note)
                if attempt == MAX_RETRIES:
                    raise
            finally:
                self.standin.latency = 0.0
        raise AssertionError("unreachable")

    def refresh(
        self, concurrency: int, expected: int, *extra: str, shards: int = 1, **kwargs: Any
    ) -> RefreshRun:
        """`refresh --json` (or `shards` shard processes at once) that must refresh exactly
        `expected` accounts, and leave none due."""
        assert self.standin is not None
        assert self.db is not None
        self.standin.reset_log()
        machine_before, harness_before = machine_cpu(), time.process_time()
        postgres_before = postgres_cpu()
        if shards == 1:
            # Over several apps, each app's part gets its share of the concurrency.
            per_app = str(max(1, concurrency // self.apps))
            procs = [self.cli("refresh", "--json", "--concurrency", per_app, *extra,
                              **kwargs)]  # fmt: skip
        else:
            procs = self._sharded(concurrency // shards, shards, *extra, **kwargs)
        machine_after, harness_after = machine_cpu(), time.process_time()
        postgres_after = postgres_cpu()
        for proc in procs:
            if proc.exit_code == 1 and proc.stdout.lstrip().startswith("{"):
                stopped = proc.json().get("stopped") or {}
                if stopped.get("reason") in ("lock_lost", "database_error"):
                    raise Interrupted(
                        f"{stopped.get('reason')}: " + " / ".join(proc.stderr.split("\n")[:2])[:300]
                    )
        reports = [proc.check(0).json() for proc in procs]
        refreshed = sum(report["counts"]["refreshed"] for report in reports)
        if refreshed != expected or any(report.get("stopped") for report in reports):
            raise BenchmarkError(
                f"refresh at concurrency {concurrency}: counts "
                f"{[report['counts'] for report in reports]}, stopped "
                f"{[report.get('stopped') for report in reports]}; expected {expected} refreshed"
            )
        left = self.db.due_count()
        if left:
            raise BenchmarkError(f"{left} accounts are still due after the run")
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
        proc = procs[0]
        if shards > 1:  # one record for the shards together: the slowest, their sums
            proc = Proc(
                argv=proc.argv,
                exit_code=0,
                stdout="",
                stderr="",
                wall=max(p.wall for p in procs),
                maxrss_kib=max(p.maxrss_kib for p in procs),
                cpu=sum(p.cpu for p in procs),
            )
        return RefreshRun(
            concurrency,
            refreshed,
            max(report["duration_seconds"] for report in reports),
            proc,
            machine_busy=busy / total if total else float("nan"),
            machine_busy_cpu=busy / os.sysconf("SC_CLK_TCK"),
            standin_cpu=harness_after - harness_before,
            postgres_cpu=postgres_after - postgres_before,
        )

    def _sharded(self, concurrency: int, shards: int, *extra: str, **kwargs: Any) -> list[Proc]:
        """`shards` refresh processes at once, shard K of N each."""
        results: list[Proc | BaseException | None] = [None] * shards

        def one(index: int) -> None:
            try:
                results[index] = self.cli(
                    "refresh", "--json", "--concurrency", str(concurrency),
                    "--shard", f"{index}/{shards}", *extra, **kwargs,
                )  # fmt: skip
            except BaseException as error:  # handed to the caller below
                results[index] = error

        threads = [threading.Thread(target=one, args=(index,)) for index in range(shards)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        procs: list[Proc] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            assert result is not None
            procs.append(result)
        return procs

    # --- the run ----------------------------------------------------------------

    def start_database(self) -> None:
        """Our own database (upgraded to the current schema) and the stand-in."""
        self.db = BenchDatabase(self.s.admin_url)
        self.db.create()
        log(f"created database {self.db.name}")
        self.pg_info = self.db.server_info()
        self.standin = TikTokStandIn().start()
        self.cli("db", "upgrade", "--quiet").check()

    def run(self, benchmarks: Sequence[Benchmark]) -> None:
        chosen = [bench for bench in benchmarks if bench.name in self.s.only]
        if any(bench.needs_database for bench in chosen):
            self.start_database()
        for bench in chosen:
            log(f"--- {bench.name}")
            started = time.perf_counter()
            bench.run(self)
            log(f"--- {bench.name} took {time.perf_counter() - started:.0f}s")

    def close(self) -> None:
        if self.standin is not None:
            self.standin.stop()
        if self.db is not None:
            self.db.drop()
            log(f"dropped database {self.db.name}")
