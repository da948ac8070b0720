"""Spent refresh tokens, the key check value, and what an import needs to refuse stale pairs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
WITHOUT_TOKENS = sa.text("refresh_token_ciphertext IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("refresh_token_fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("tokens_issued_at", Timestamp, nullable=True))
    op.create_index(
        "ix_accounts_without_tokens",
        "accounts",
        ["id"],
        postgresql_where=WITHOUT_TOKENS,
        sqlite_where=WITHOUT_TOKENS,
    )

    op.create_table(
        "spent_refresh_tokens",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("spent_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_spent_refresh_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_spent_refresh_tokens")),
    )
    op.create_index("ix_spent_refresh_tokens_account_id", "spent_refresh_tokens", ["account_id"])
    op.create_index("ix_spent_refresh_tokens_spent_at", "spent_refresh_tokens", ["spent_at"])

    op.create_table(
        "key_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_check")),
    )


def downgrade() -> None:
    op.drop_table("key_check")
    op.drop_index("ix_spent_refresh_tokens_spent_at", table_name="spent_refresh_tokens")
    op.drop_index("ix_spent_refresh_tokens_account_id", table_name="spent_refresh_tokens")
    op.drop_table("spent_refresh_tokens")
    op.drop_index("ix_accounts_without_tokens", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("tokens_issued_at")
        batch.drop_column("refresh_token_fingerprint")
