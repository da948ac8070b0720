"""A used PostgreSQL test database made as good as new, or proven not to be.

Creating a database from the template and dropping it after the test cost PostgreSQL about
a quarter of a second of CPU a test (`DROP DATABASE` forces a checkpoint), outside the
pytest processes, so `time pytest` never showed it: about 200 s a run. So a used database
is emptied instead (its sessions ended, every table but `alembic_version` truncated, its
sequences restarted) and then compared with the template: `state` is a digest of everything
a test could have changed besides rows (tables, columns, defaults, constraints, indexes,
triggers, functions, views, rules, policies, owners, grants, extensions, the database's
own settings, sequence positions, the schema revision, large objects, prepared
transactions). A database whose digest differs from the template's, or that could not be
emptied, is dropped as before; one that matches is handed to the next test.
"""

from __future__ import annotations

import time

import psycopg

__all__ = ["reset", "sessions_gone", "state"]

_NOT_SYSTEM = "nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"

STATE = f"""
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE {_NOT_SYSTEM}),
rel AS (SELECT c.* FROM pg_class c JOIN ns ON ns.oid = c.relnamespace)
SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), '')) FROM (
  SELECT 'ns ' || nspname || ' ' || coalesce(n.nspacl::text, '') || ' '
         || pg_get_userbyid(n.nspowner)
    FROM pg_namespace n WHERE {_NOT_SYSTEM}
  UNION ALL
  SELECT 'rel ' || oid::regclass::text || ' ' || relkind::text || relpersistence::text || ' '
         || pg_get_userbyid(relowner) || ' ' || coalesce(relacl::text, '') || ' '
         || coalesce(reloptions::text, '') || ' ' || relrowsecurity
         || coalesce(' ' || CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(oid) END, '')
    FROM rel
  UNION ALL
  SELECT 'col ' || a.attrelid::regclass::text || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
         || coalesce(a.attacl::text, '') || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'idx ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid IN (SELECT oid FROM rel)
  UNION ALL
  SELECT 'trg ' || pg_get_triggerdef(oid) || ' ' || tgenabled::text
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(coalesce(p.prosrc, ''))
    FROM pg_proc p WHERE pronamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'rule ' || tablename || ' ' || rulename || ' ' || definition
    FROM pg_rules WHERE schemaname NOT LIKE 'pg\\_%'
  UNION ALL
  SELECT 'pol ' || tablename || ' ' || policyname || ' ' || coalesce(qual, '')
    FROM pg_policies
  UNION ALL
  SELECT 'ext ' || extname || ' ' || extversion FROM pg_extension
  UNION ALL
  SELECT 'evt ' || evtname FROM pg_event_trigger
  UNION ALL
  SELECT 'set ' || setrole::text || ' ' || array_to_string(setconfig, ',')
    FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL
  SELECT 'db ' || coalesce(datacl::text, '') || ' ' || datallowconn || ' ' || datconnlimit
         || ' ' || pg_get_userbyid(datdba)
    FROM pg_database WHERE datname = current_database()
  UNION ALL
  SELECT 'seq ' || schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, '-')
    FROM pg_sequences
  UNION ALL
  SELECT 'lo ' || count(*) FROM pg_largeobject_metadata
  UNION ALL
  SELECT 'xact ' || count(*) FROM pg_prepared_xacts WHERE database = current_database()
) AS lines(line)
"""

# Rows: every table but the schema revision is emptied, so only the revision is compared.
REVISION = (
    "SELECT coalesce(string_agg(version_num, ',' ORDER BY version_num), '') FROM alembic_version"
)

TABLES = (
    "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
)


def state(connection: psycopg.Connection) -> str:
    """The digest a database is compared by (its rows aside from the revision: see above)."""
    digest = connection.execute(STATE).fetchone()
    revision = connection.execute(REVISION).fetchone()
    assert digest is not None
    assert revision is not None
    return f"{digest[0]} {revision[0]}"


def reset(dsn: str) -> str:
    """End the database's other sessions, empty its tables, restart its sequences; its
    state afterwards. Raises on anything it cannot do (the caller then drops it)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
        connection.execute("SET lock_timeout = '5s'")
        connection.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        tables = [row[0] for row in connection.execute(TABLES)]
        if tables:
            connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        return state(connection)


def sessions_gone(admin: psycopg.Connection, name: str, timeout: float = 5.0) -> bool:
    """Whether every session on `name` has ended (a closed connection's server process
    leaves a moment later: a test counting sessions must not see it)."""
    deadline = time.monotonic() + timeout
    while True:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
        if row is not None and row[0] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
