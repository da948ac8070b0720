"""Accounts belong to an app (issue 20): `accounts.app`, and every account stored before
this revision belongs to the app `tiktok` (the one app of a configuration without a file).
A user id (`open_id`: TikTok's name for it) is unique within its app, not across apps.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("app", sa.String(64), nullable=False, server_default=sa.text("'tiktok'"))
        )
        batch.drop_constraint(op.f("uq_accounts_open_id"), type_="unique")
        batch.create_unique_constraint(op.f("uq_accounts_app"), ["app", "open_id"])


def downgrade() -> None:
    # Fails, changing nothing, while two apps hold the same user id: say which to remove.
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("uq_accounts_app"), type_="unique")
        batch.create_unique_constraint(op.f("uq_accounts_open_id"), ["open_id"])
        batch.drop_column("app")
