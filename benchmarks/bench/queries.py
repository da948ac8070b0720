"""Selection, in process: the repository's calls timed, their SQL captured and explained."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench.common import WINDOW, BenchmarkError
from bench.database import BenchDatabase


@dataclass
class Plan:
    label: str
    kind: str  # custom | generic
    sql: str
    text: str
    indexes: list[str]
    seq_scans: list[str]
    execution: str


_INDEX_RE = re.compile(
    r"(?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)?"
    r" (?:using|on) (\w+)"
)
_SEQ_RE = re.compile(r"Seq Scan on (\w+)")
_EXEC_RE = re.compile(r"Execution Time: ([\d.]+) ms")


def _plan(label: str, kind: str, statement: str, lines: list[str]) -> Plan:
    text = "\n".join(lines)
    indexes = list(dict.fromkeys(_INDEX_RE.findall(text)))
    seqs = list(dict.fromkeys(_SEQ_RE.findall(text)))
    found = _EXEC_RE.search(text)
    return Plan(
        label,
        kind,
        statement.strip(),
        text,
        indexes,
        seqs,
        f"{float(found.group(1)):.2f} ms" if found else "?",
    )


def in_process_queries(
    db: BenchDatabase, repeats: int
) -> tuple[dict[str, list[float]], list[Plan]]:
    """Time the repository's calls on this database, capture their SQL, explain it."""
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.services.status import collect_status
    from tokenrefresh.storage import schema
    from tokenrefresh.storage.engine import create_database_engine
    from tokenrefresh.storage.records import AccountStatus, Due
    from tokenrefresh.storage.repository import Repository

    engine = create_database_engine(
        make_url(db.url).set(drivername="postgresql+psycopg"), pool_size=5
    )
    captured: list[tuple[str, Any]] = []
    capturing = [False]

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if capturing[0]:
            captured.append((statement, parameters))

    repository = Repository(engine)

    def due() -> Due:
        now = utcnow()
        return Due(now=now, horizon=now + WINDOW)

    def first_batch() -> list[Any]:
        batches = repository.due_batches(due(), 500)
        try:
            return next(batches)
        finally:
            _close(batches)

    def two_batches() -> None:
        batches = repository.due_batches(due(), 500)
        try:
            next(batches)
            next(batches, None)
        finally:
            _close(batches)

    def all_batches() -> None:
        for _ in repository.due_batches(due(), 500):
            pass

    first_id = first_batch()[0].id

    def claim() -> None:
        with repository.claim(first_id, due(), None) as held:
            if held is None:
                raise BenchmarkError("could not claim the first due account")

    def new_engine() -> None:
        fresh = create_database_engine(engine.url, pool_size=5)
        try:
            schema.ensure_current(fresh, auto_upgrade=False)
        finally:
            fresh.dispose()

    calls: dict[str, Callable[[], Any]] = {
        "new engine + schema check (every command's first step)": new_engine,
        "Repository.stats(now, 90m)": lambda: repository.stats(utcnow(), WINDOW),
        "first batch of due_batches(due, 500)": first_batch,
        "all due_batches (every due account)": all_batches,
        "count_due(due) (start of every run)": lambda: repository.count_due(due()),
        "claim(first due account) + release": claim,
        "collect_status (all of `status`'s queries)": lambda: collect_status(
            repository, utcnow(), WINDOW, 50
        ),
    }
    timings: dict[str, list[float]] = {}
    try:
        for name, call in calls.items():
            call()  # warm: connections, compiled-statement cache, buffers
            timings[name] = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - started)

        def capture(call: Callable[[], Any]) -> list[tuple[str, Any]]:
            captured.clear()
            capturing[0] = True
            try:
                call()
            finally:
                capturing[0] = False
            return [
                (st, p)
                for st, p in captured
                # WITH: the claim's CTE (SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE)
                if st.lstrip().upper().startswith(("SELECT", "WITH"))
                and "alembic_version" not in st
            ]

        wanted: list[tuple[str, str, Any, bool]] = []
        ((st, p),) = capture(first_batch)
        wanted.append(("due candidates, first batch", st, p, True))
        batches = capture(two_batches)
        if len(batches) > 1:
            wanted.append(("due candidates, next batch (keyset)", *batches[1], True))
        ((st, p),) = capture(lambda: repository.count_due(due()))
        wanted.append(("count_due", st, p, True))
        ((st, p),) = capture(claim)
        wanted.append(("claim (FOR UPDATE SKIP LOCKED)", st, p, True))
        for index, (st, p) in enumerate(capture(lambda: repository.stats(utcnow(), WINDOW))):
            wanted.append((f"stats #{index + 1}: {_select_list(st)}", st, p, False))
        ((st, p),) = capture(lambda: repository.list_accounts(AccountStatus.EXPIRED, 50))
        wanted.append(("status: accounts to reconnect (limit 50)", st, p, False))
        for label, call in (
            ("status: last runs", repository.last_runs),
            ("status: last successful runs", repository.last_successful_runs),
        ):
            for index, (st, p) in enumerate(capture(call)):  # the newest runs, then pages
                wanted.append((label if index == 0 else f"{label} #{index + 1}", st, p, False))
    finally:
        engine.dispose()

    plans: list[Plan] = []
    with db.connect(autocommit=False) as connection:
        for label, statement, params, generic in wanted:
            lines = [
                row[0]
                for row in connection.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement,
                    params,
                )
            ]
            connection.rollback()  # FOR UPDATE took a row lock
            plans.append(_plan(label, "custom", statement, lines))
            if generic:
                plans.append(
                    _plan(
                        label, "generic", statement, _explain_generic(connection, statement, params)
                    )
                )
                connection.rollback()
    return timings, plans


def _select_list(statement: str, limit: int = 60) -> str:
    """`SELECT a, b FROM ...` -> `a, b` (shortened): a label for a captured query."""
    text = " ".join(statement.split())
    select_list = text[len("SELECT ") : text.find(" FROM ")] if " FROM " in text else text
    select_list = re.sub(r"\s+AS \w+", "", select_list)
    select_list = re.sub(r"%\(\w+\)s(::[A-Z ]+)?", "?", select_list)
    select_list = select_list.replace("accounts.", "")
    return select_list if len(select_list) <= limit else select_list[: limit - 3] + "..."


def _close(iterator: Any) -> None:
    """Close a generator early (its database connection is returned to the pool)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _explain_generic(connection: psycopg.Connection[Any], statement: str, params: Any) -> list[str]:
    """EXPLAIN ANALYZE of the statement as a prepared statement forced to a generic plan."""
    names: list[str] = []
    for name in re.findall(r"%\((\w+)\)s", statement):
        if name not in names:
            names.append(name)
    prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    client = psycopg.ClientCursor(connection)
    arguments = ", ".join(client.mogrify("%s", [params[name]]) for name in names)
    try:
        connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        client.execute(f"PREPARE bench_generic AS {prepared}".replace("%", "%%"))
        rows = client.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic({arguments})".replace("%", "%%")
        ).fetchall()
        return [row[0] for row in rows]
    except psycopg.Error as error:
        return [f"(generic plan not available: {error})"]
    finally:
        connection.rollback()
        with contextlib.suppress(psycopg.Error):
            connection.execute("DEALLOCATE bench_generic")
            connection.rollback()
