"""Shared fixtures: real SQLite files, a real PostgreSQL database per test, the loopback
TikTok stand-in, and helpers to run the CLI in-process or as a real process.

PostgreSQL tests use TOKENREFRESH_TEST_DATABASE_URL (default: the local server with trust
auth). Each test gets a fresh database cloned from a migrated template. Without a reachable
server those tests are skipped, unless TOKENREFRESH_REQUIRE_POSTGRES=1 (CI), which turns the
skip into a failure.

The suite runs in parallel (pytest-xdist, `-n` in pyproject's addopts). Session fixtures are
per worker: each worker migrates a template of its own (`CREATE DATABASE ... TEMPLATE` fails
while another session is connected to the template, so workers never share one), and every
database name carries the worker's id (PYTEST_XDIST_WORKER) so a leftover is traceable.
SQLite tests get a file of their own, a copy of a template the worker migrated once. Files
live under tmp_path, ports are chosen by the kernel (port 0): nothing else is shared.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer.main
import typer.testing
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

import pg_reset
from standin import IssuedTokens, TikTokStandIn
from tokenrefresh.base import scrub
from tokenrefresh.cli import app
from tokenrefresh.storage import schema
from tokenrefresh.storage.engine import create_database_engine
from tokenrefresh.storage.repository import Repository

# Fixtures of the multi-app tests (a configuration file of apps on stand-ins).
pytest_plugins = ["apps_setup"]

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# "gw0", "gw1"... under pytest-xdist; "main" when the suite runs in one process (-n 0).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

# Timing is noisy on shared machines: Hypothesis judges inputs, never wall-clock time.
settings.register_profile(
    "tokenrefresh", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("tokenrefresh")
CONFIG_PREFIXES = ("TOKENREFRESH_", "TIKTOK_")
# libpq's GSSAPI probe (gssencmode=prefer, the default) in psycopg's binary wheel has
# crashed a worker with a segfault in connect (once in about 10 full runs, in the database
# keeper's thread; psycopg/psycopg#1213 reports the same and this workaround). The tests use
# trust auth and no Kerberos: disabled for this process and every process it starts.
os.environ.setdefault("PGGSSENCMODE", "disable")


def _built_once() -> None:
    """Typer's CliRunner builds the Click command from the Typer app on every invoke, which
    for this app (about 40 commands, each signature inspected) cost about 40 ms of CPU, a
    fifth of an in-process test's time. A process builds it once; so does a worker now. The
    command keeps no state between invocations (each gets its own Click context)."""
    build = typer.main.get_command
    assert typer.testing._get_command is build, "Typer moved the name CliRunner builds with"
    built: dict[int, tuple[typer.Typer, Any]] = {}

    def get_command(typer_instance: typer.Typer) -> Any:
        key = id(typer_instance)
        if key not in built:
            built[key] = (typer_instance, build(typer_instance))  # keeps the app alive
        return built[key][1]

    typer.testing._get_command = get_command  # type: ignore[attr-defined]


_built_once()


# ----------------------------------------------------------------------------- PostgreSQL


def _admin_url() -> URL:
    url = make_url(os.environ.get("TOKENREFRESH_TEST_DATABASE_URL", DEFAULT_PG_URL))
    return url.set(drivername="postgresql+psycopg")


class PostgresServer:
    """Hands each test a migrated database as good as new, from one template.

    A thread of its own keeps the tests from waiting on the server: it creates databases
    from the template ahead of the tests that take them, and makes each used one as good as
    new (`pg_reset`: emptied, then proven equal to the template) or, failing that, drops
    it. Each database is used by one test at a time, and every one is dropped by the end of
    the session.
    """

    AHEAD = 3  # databases ready ahead of need

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
        self._watch = psycopg.connect(self._dsn(admin_url.database), autocommit=True)
        self.template = f"tokenrefresh_tpl_{WORKER}_{uuid.uuid4().hex[:10]}"
        self._create(self.template)
        engine = create_database_engine(self.url(self.template))
        schema.upgrade(engine)
        engine.dispose()
        with psycopg.connect(self._dsn(self.template)) as connection:
            self._pristine = pg_reset.state(connection)
        if not pg_reset.sessions_gone(self._watch, self.template):
            raise RuntimeError(f"a session on {self.template} did not end")
        self._ready: queue.Queue[str] = queue.Queue()
        self._used: queue.Queue[str | None] = queue.Queue()
        self._failure: BaseException | None = None
        self._keeper = threading.Thread(target=self._keep_ready, daemon=True)
        self._keeper.start()

    def url(self, database: str | None) -> URL:
        return self.admin_url.set(database=database)

    def _dsn(self, database: str | None) -> str:
        url = self.url(database).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> None:
        with self._admin.connect() as connection:
            clause = f" TEMPLATE {template}" if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))

    def _keep_ready(self) -> None:
        """Recycle (or drop) each used database; create one while fewer than AHEAD wait."""
        try:
            while True:
                if self._ready.qsize() < self.AHEAD and self._used.empty():
                    name = self._new_name()
                    self._create(name, self.template)
                    self._ready.put(name)
                    continue
                try:  # wakes up to create when a test took a database and kept it
                    used = self._used.get(timeout=0.05)
                except queue.Empty:
                    continue
                if used is None:
                    return
                if self.as_new(used):
                    self._ready.put(used)
                else:
                    self.drop(used)
        except BaseException as error:  # raised to the test that waits for a database
            self._failure = error

    def as_new(self, name: str) -> bool:
        """Whether `name` was emptied and is now equal to the template (see `pg_reset`)."""
        try:
            state = pg_reset.reset(self._dsn(name))
        except psycopg.Error:
            return False
        return state == self._pristine and pg_reset.sessions_gone(self._watch, name)

    def fresh_database(self) -> str:
        while True:
            try:
                return self._ready.get(timeout=1)
            except queue.Empty:
                if not self._keeper.is_alive():
                    raise RuntimeError("no fresh database: its thread stopped") from self._failure

    def release(self, name: str) -> None:
        """A test is done with its database: made as good as new (or dropped) soon."""
        self._used.put(name)

    def empty_database(self) -> str:
        name = self._new_name()
        self._create(name)
        return name

    @staticmethod
    def _new_name() -> str:
        return f"tokenrefresh_test_{WORKER}_{uuid.uuid4().hex[:12]}"

    def drop(self, name: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self._used.put(None)
        self._keeper.join()
        for waiting in (self._ready, self._used):  # _used too, had the keeper failed
            while not waiting.empty():
                if (name := waiting.get()) is not None:
                    self.drop(name)
        self.drop(self.template)
        self._watch.close()
        self._admin.dispose()


@pytest.fixture(autouse=True)
def _secrets_of_this_test_only() -> Iterator[None]:
    """The secrets a test registers (its in-process CLI runs read settings) are forgotten
    after it: a webhook URL on 127.0.0.1 would otherwise mask the next test's stand-in URL,
    and a fixture's database name the word `tokenrefresh` in later messages."""
    redactor = scrub.REDACTOR
    saved = (redactor._windows, redactor._wholes)
    yield
    redactor._windows, redactor._wholes = saved


@pytest.fixture(autouse=True)
def _no_configuration_file_of_the_developer(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default configuration file (~/.config/tokenrefresh/config.toml) is looked for
    under an empty XDG_CONFIG_HOME: a developer's own file must not change what a test sees."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "no-config"))
    monkeypatch.delenv("TOKENREFRESH_CONFIG", raising=False)


@pytest.fixture(autouse=True)
def _logging_of_this_test_only() -> Iterator[None]:
    """An in-process CLI run sets the log levels (`--quiet`: the `tokenrefresh` logger to
    ERROR): put back after the test, so that no test depends on which test ran before it
    in the same process (xdist workers mix the order). Handlers are pytest's to manage."""
    root, ours = logging.getLogger(), logging.getLogger("tokenrefresh")
    saved = (root.level, ours.level)
    yield
    root.setLevel(saved[0])
    ours.setLevel(saved[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    admin_url = _admin_url()
    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:
        where = admin_url.render_as_string(hide_password=True)
        message = (
            f"PostgreSQL is not reachable at {where} ({type(error).__name__}); set "
            "TOKENREFRESH_TEST_DATABASE_URL to a server where the tests may create databases"
        )
        if os.environ.get("TOKENREFRESH_REQUIRE_POSTGRES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = PostgresServer(admin_url)
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test only."""
    name = postgres_server.fresh_database()
    yield postgres_server.url(name).render_as_string(hide_password=False)
    postgres_server.release(name)


# ----------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A SQLite database migrated once per worker (as `tokenrefresh db upgrade` makes it),
    as bytes: the last connection's close checkpointed its WAL into the file."""
    path = tmp_path_factory.mktemp("template") / "tokenrefresh.db"
    engine = create_database_engine(make_url(f"sqlite:///{path}"), create=True)
    schema.upgrade(engine)
    engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()
    return path.read_bytes()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: bytes) -> str:
    """A migrated SQLite database of this test's own: a copy of the worker's template,
    0600 in a 0700 folder as tokenrefresh creates it."""
    path = tmp_path / "data" / "tokenrefresh.db"
    path.parent.mkdir(mode=0o700)
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(sqlite_template)
    return f"sqlite:///{path}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on the test's database."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_database_engine(url, pool_size=12)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def repository(engine: Engine) -> Repository:
    return Repository(engine)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """A migrated engine on a fresh PostgreSQL database, for PostgreSQL-only tests."""
    engine = create_database_engine(
        make_url(postgres_url).set(drivername="postgresql+psycopg"), pool_size=12
    )
    yield engine
    engine.dispose()


# ----------------------------------------------------------------------------- TikTok, config


@pytest.fixture
def standin() -> Iterator[TikTokStandIn]:
    with TikTokStandIn() as server:
        yield server


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode("ascii")


def make_env(
    database_url: str,
    standin: TikTokStandIn,
    fernet_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The configuration of a working installation, as environment variables.

    Any TOKENREFRESH_* / TIKTOK_* variable of the developer's shell is removed, and HOME
    points into tmp_path so that nothing reads or writes the real user data dir.
    """
    for name in list(os.environ):
        if name.startswith(CONFIG_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    return {
        "TOKENREFRESH_DATABASE_URL": database_url,
        "TOKENREFRESH_ENCRYPTION_KEYS": fernet_key,
        "TIKTOK_CLIENT_KEY": standin.client_key,
        "TIKTOK_CLIENT_SECRET": standin.client_secret,
        "TIKTOK_API_BASE_URL": standin.base_url,
    }


@pytest.fixture
def env_for(
    standin: TikTokStandIn, fernet_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], dict[str, str]]:
    """The working configuration of this test, on the database URL given."""
    return functools.partial(
        make_env, standin=standin, fernet_key=fernet_key, tmp_path=tmp_path, monkeypatch=monkeypatch
    )


@pytest.fixture
def env(database_url: str, env_for: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """A working configuration on this test's database (SQLite and PostgreSQL in turn)."""
    return env_for(database_url)


@pytest.fixture
def pg_env(postgres_url: str, env_for: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """A working configuration on a fresh PostgreSQL database, for PostgreSQL-only tests."""
    return env_for(postgres_url)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    """Run the CLI in-process: cli("refresh", "--json", input=..., env={...overrides})."""

    def run(
        *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> CliResult:
        merged: dict[str, str | None] = {**base_env, **(env or {})}
        result = CliRunner().invoke(
            app, list(args), input=input, env=merged, catch_exceptions=False
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)

    base_env = env
    return run


@pytest.fixture
def run_process(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m tokenrefresh ...` as a real process with the test's environment."""

    def run(
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tokenrefresh", *args],
            input=input,
            env=process_env(base_env, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    base_env = env
    return run


def process_env(
    config: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    return {**kept, **config, **(extra or {}), "PYTHONUNBUFFERED": "1"}


def run_python(
    script: str,
    *args: str,
    config: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -c SCRIPT ARGS...` as a real process with the test's configuration."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=process_env(config, extra),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- the image


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The container recipes' image: the project installed in a virtualenv uid 10001 can
    run (test_recipes_container.py builds it). Built once per run, whichever worker asks
    first (the others wait on a lock and take its path); removed when the run ends."""
    from test_recipes_container import build_image_root

    recorded = _run_dir(request.config, tmp_path_factory) / "image.path"
    with recorded.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not recorded.exists():
            recorded.write_text(str(build_image_root()))
        return Path(recorded.read_text())


def _run_dir(config: pytest.Config, factory: pytest.TempPathFactory) -> Path:
    """The folder every worker of this run shares (pytest's base temp; a worker's own is
    inside it)."""
    base = factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


# Modules with the longest tests (`pytest --durations=60`), dealt to the workers first with
# every `slow` test, so that the run does not end on one worker finishing a long test
# while the others idle. The order within each part is the collection order.
LONG_FIRST = (
    "test_recipes_container.py",
    "test_no_secrets.py",
    "test_ping_bounds.py",
    "test_recipes_systemd.py",
    "test_recipes_events.py",
    "test_recipes_cron.py",
    "test_answer_parser.py",
    "test_scale_faults.py",
    "test_run_resilience.py",
    "test_events.py",
    "test_on_demand_races.py",
    "test_refresh_failures.py",
    "test_event_delivery.py",
    "test_on_demand_brakes.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests first (a stable, deterministic order: xdist needs every worker to
    collect the same list)."""

    def rank(item: pytest.Item) -> int:
        module = item.path.name
        if module in LONG_FIRST:
            return LONG_FIRST.index(module)
        return len(LONG_FIRST) if item.get_closest_marker("slow") else len(LONG_FIRST) + 1

    items.sort(key=rank)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run (not a worker) ends: remove the image a worker built."""
    if hasattr(session.config, "workerinput"):
        return
    factory = session.config._tmp_path_factory  # type: ignore[attr-defined]
    recorded = _run_dir(session.config, factory) / "image.path"
    if recorded.exists():
        shutil.rmtree(recorded.read_text(), ignore_errors=True)
        recorded.unlink()


# ----------------------------------------------------------------------------- accounts


@pytest.fixture
def add_accounts(cli: Cli, standin: TikTokStandIn) -> Callable[..., list[IssuedTokens]]:
    """Issue n accounts at the stand-in and import them; returns what TikTok issued."""

    def add(count: int, *, prefix: str = "user", **line_fields: Any) -> list[IssuedTokens]:
        issued = [standin.issue(f"{prefix}{index}") for index in range(count)]
        lines = "\n".join(json.dumps(tokens.as_import_line(**line_fields)) for tokens in issued)
        result = cli("accounts", "import", "-", "--quiet", input=lines + "\n")
        assert result.exit_code == 0, result.stderr
        return issued

    return add
