"""A partial index of the failing accounts, for `status` on large tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FAILING = sa.text("consecutive_failures > 0")


def upgrade() -> None:
    op.create_index(
        "ix_accounts_failing", "accounts", ["id"], postgresql_where=FAILING, sqlite_where=FAILING
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_failing", table_name="accounts")
