"""Fresh reads through the library: `TokenStore.access_token` of a token that is still valid.

    python benchmarks/fresh_reads.py [--accounts 1000] [--reads 5000] [--admin-url URL]

One thread, one store, on SQLite (a temporary file) and on PostgreSQL (a database of its
own, dropped at the end). Each read is one indexed query and one decryption; nothing is
sent to TikTok (the test asserts that; here the client credentials are not even set).
Prints reads per second and the p50/p99 latency of each, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import default_admin_url, median
from bench.database import BenchDatabase
from bench.processes import clean_environment
from cryptography.fernet import Fernet

from tokenrefresh import TokenStore


def import_accounts(env: dict[str, str], count: int) -> None:
    lines = "\n".join(
        json.dumps(
            {
                "open_id": f"bench{index:06d}",
                "access_token": "act." + secrets.token_urlsafe(48),
                "refresh_token": "rft." + secrets.token_urlsafe(48),
                "expires_in": 86400,
                "refresh_expires_in": 31536000,
                "scope": "user.info.basic",
            }
        )
        for index in range(count)
    )
    subprocess.run(
        [sys.executable, "-m", "tokenrefresh", "accounts", "import", "-q"],
        input=lines,
        text=True,
        env=env,
        check=True,
    )


def measure(env: dict[str, str], accounts: int, reads: int) -> dict[str, float]:
    open_ids = [f"bench{random.randrange(accounts):06d}" for _ in range(reads)]
    latencies: list[float] = []
    with TokenStore.from_env(env) as store:
        for open_id in open_ids[:100]:  # warm up: pool, statement cache
            store.access_token(open_id=open_id)
        started = time.perf_counter()
        for open_id in open_ids:
            before = time.perf_counter()
            store.access_token(open_id=open_id)
            latencies.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {"rate": reads / elapsed, "p50": cuts[49], "p99": cuts[98]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--admin-url", default=default_admin_url())
    args = parser.parse_args()
    key = Fernet.generate_key().decode()
    results: dict[str, dict[str, float]] = {}
    database = BenchDatabase(args.admin_url)
    with tempfile.TemporaryDirectory() as home:
        base = clean_environment(Path(home))
        sqlite = {
            "TOKENREFRESH_DATABASE_URL": f"sqlite:///{Path(home) / 'bench.db'}",
            "TOKENREFRESH_ENCRYPTION_KEYS": key,
        }
        postgres = {"TOKENREFRESH_DATABASE_URL": database.url, "TOKENREFRESH_ENCRYPTION_KEYS": key}
        database.create()
        try:
            for env in (sqlite, postgres):
                subprocess.run(
                    [sys.executable, "-m", "tokenrefresh", "db", "upgrade", "--create", "-q"],
                    env={**base, **env},
                    check=True,
                )
                import_accounts({**base, **env}, args.accounts)
            # Side by side, alternating, three rounds each: medians of the rounds.
            rounds: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
            for _ in range(3):
                for label, env in (("sqlite", sqlite), ("postgresql", postgres)):
                    rounds[label].append(measure(env, args.accounts, args.reads))
            for label, measured in rounds.items():
                results[label] = {
                    field: median([m[field] for m in measured]) for field in ("rate", "p50", "p99")
                }
        finally:
            database.drop()
    print(f"fresh reads, one thread, {args.reads} reads over {args.accounts} accounts")
    print("| database | reads/s | p50 | p99 | target (>= 1000/s, p99 < 5 ms) |")
    print("|---|---|---|---|---|")
    for label, result in results.items():
        met = result["rate"] >= 1000 and result["p99"] < 0.005
        print(
            f"| {label} | {result['rate']:.0f} | {result['p50'] * 1000:.2f} ms "
            f"| {result['p99'] * 1000:.2f} ms | {'met' if met else 'NOT met'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
