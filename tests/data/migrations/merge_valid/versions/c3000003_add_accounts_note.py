"""add accounts note

Revision ID: c3000003
Revises: b2000002
"""

import sqlalchemy as sa
from alembic import op

revision = "c3000003"
down_revision = "b2000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "note")
