"""Claims as leases (no transaction held across a call to TikTok), and the status `revoked`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

STATUSES = "status IN ('active', 'expired', 'disabled', 'revoked')"
OLD_STATUSES = "status IN ('active', 'expired', 'disabled')"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch.create_check_constraint("status", STATUSES)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch.create_check_constraint("status", OLD_STATUSES)
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
