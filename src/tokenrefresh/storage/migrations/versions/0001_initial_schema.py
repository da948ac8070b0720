"""Initial schema: accounts, runs and refresh attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("open_id", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("access_token_ciphertext", sa.Text(), nullable=True),
        sa.Column("refresh_token_ciphertext", sa.Text(), nullable=True),
        sa.Column("access_expires_at", Timestamp, nullable=False),
        sa.Column("refresh_expires_at", Timestamp, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_generation", sa.Integer(), nullable=False),
        sa.Column("last_refreshed_at", Timestamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'disabled')", name=op.f("ck_accounts_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("open_id", name=op.f("uq_accounts_open_id")),
    )
    op.create_index(
        "ix_accounts_due",
        "accounts",
        ["access_expires_at", "id"],
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_index("ix_accounts_refresh_expires_at", "accounts", ["refresh_expires_at"])
    op.create_index("ix_accounts_status", "accounts", ["status"])

    op.create_table(
        "runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("shard", sa.String(32), nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_command_started_at", "runs", ["command", "started_at"])

    op.create_table(
        "refresh_attempts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("run_id", BigId, nullable=True),
        sa.Column("attempted_at", Timestamp, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("log_id", sa.String(128), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_refresh_attempts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_refresh_attempts_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_attempts")),
    )
    op.create_index(
        "ix_refresh_attempts_account_id_attempted_at",
        "refresh_attempts",
        ["account_id", "attempted_at"],
    )
    op.create_index("ix_refresh_attempts_attempted_at", "refresh_attempts", ["attempted_at"])
    op.create_index("ix_refresh_attempts_run_id", "refresh_attempts", ["run_id"])


def downgrade() -> None:
    op.drop_table("refresh_attempts")
    op.drop_table("runs")
    op.drop_table("accounts")
